"""Live serving's compiled feature state (``mlmodel.live``) gives the model exactly the inputs the offline
pipeline builds: ``compute_features`` over everything known so far, the newest window normalised. Random
batch sizes, markets with different level counts, a recording gap, a one-sided stretch, trades that arrive
one batch late, tiny buffers (so compaction, re-basing and growth all happen), two models with different
windows and gap rules on the same markets, and the packed wire format in between. The compiled LSTM path
(projections cached per row, ``LiveState.lstm_outputs``) predicts what torch predicts from those inputs."""

from __future__ import annotations

import numpy as np
import pytest

from market import batchwire
from market.dayfiles import BookArrays, TradeArrays
from mlmodel.features import FeatureConfig, compute_features
from mlmodel.inference import latest_window
from mlmodel.live import LiveState, ModelSpec
from tests.mlmodel.synth import column_batch, random_predictor, synthetic_market

N = 1300


def _markets() -> list[tuple[BookArrays, TradeArrays]]:
    out = []
    for k, (levels, gap_at) in enumerate([(30, None), (15, 900), (10, None), (5, 400)]):
        book, trades = synthetic_market(N, seed=10 + k, levels=levels, gap_at=gap_at, price=500.0 * (k + 1))
        if k == 2:  # a one-sided stretch: no prediction from windows that contain it
            book.bid_px[1000:1004, 0] = 0.0
        if k == 1:  # missing deeper levels (NaN) and a zero size at the touch
            book.ask_px[300:310, 8:] = np.nan
            book.bid_sz[500, 0] = 0.0
        out.append((book, trades))
    return out


def _head(book: BookArrays, hi: int) -> BookArrays:
    return BookArrays(
        ts=book.ts[:hi], ask_px=book.ask_px[:hi], ask_sz=book.ask_sz[:hi], bid_px=book.bid_px[:hi],
        bid_sz=book.bid_sz[:hi],
    )  # fmt: skip


def _trades_head(trades: TradeArrays, t_hi: int) -> TradeArrays:
    return TradeArrays(
        ts=trades.ts[:t_hi], price=trades.price[:t_hi], volume=trades.volume[:t_hi], side=trades.side[:t_hi]
    )


@pytest.mark.parametrize("rows, trades, keep_ms", [(2048, 2048, 300_000), (64, 32, 150_000)])
def test_live_inputs_equal_the_offline_features_of_everything_known_so_far(rows, trades, keep_ms) -> None:
    models = [
        random_predictor(window=20, seed=0),
        random_predictor(
            window=35, seed=1, cfg=FeatureConfig(levels=5, depths=(1, 5), max_gap_ms=3_000), hidden=12
        ),
    ]
    specs = [ModelSpec.of(k + 1, p) for k, p in enumerate(models)]
    # The compiled path on its own state, fed the same batches (the second model's wider projections make
    # the ring grow mid-stream, so every market is featurised and projected anew).
    cspecs = [ModelSpec.of(k + 1, p, compiled=True) for k, p in enumerate(models)]
    assert all(s.lstm is not None for s in cspecs)
    series = _markets()
    state = LiveState(keep_ms=keep_ms, rows=rows, trades=trades, ring=40)
    cstate = LiveState(keep_ms=keep_ms, rows=rows, trades=trades, ring=40)
    rng = np.random.default_rng(3)
    t_done = [0] * len(series)
    lo = 0
    compared = refused = compiled = 0
    while lo < N:
        hi = min(N, lo + int(rng.integers(1, 12)))
        batch = {}
        for m, (book, tr) in enumerate(series):
            t_hi = int(np.searchsorted(tr.ts, book.ts[hi - 1], side="right"))
            if m == 3 and hi < N:  # market 3's trades arrive one batch late (older than its newest rows)
                t_hi = int(np.searchsorted(tr.ts, book.ts[max(lo - 1, 0)], side="right"))
            t_hi = max(t_hi, t_done[m])
            batch[f"KRW-M{m}"] = column_batch(book, tr, lo, hi, t_done[m], t_hi)
            t_done[m] = t_hi
        packed = batchwire.decode(batchwire.encode(batchwire.from_columns(batch)))
        midx = state.append(packed)
        cmidx = cstate.append(packed)
        # Alternate which model sees the markets: each must catch up on (only) what it has not seen.
        for k in ([0, 1] if lo % 3 else [1]) if hi < N else [0, 1]:
            pred, spec = models[k], specs[k]
            ok, x = state.model_inputs(midx, spec)
            assert x.shape == (int(ok.sum()), pred.window, spec.n_features)
            cok, raw = cstate.lstm_outputs(cmidx, cspecs[k])
            assert np.array_equal(cok, ok)
            if ok.any():
                np.testing.assert_allclose(
                    raw * pred.y_scale, pred.predict_normalized(x), rtol=1e-4, atol=1e-9
                )
                compiled += int(ok.sum())
            for j, (book, tr) in enumerate(series):
                frame = compute_features(
                    _head(book, hi), _trades_head(tr, t_done[j]), config=pred.bundle.feature_config
                )
                want = latest_window(frame, pred.window)
                assert bool(ok[j]) == (want is not None), (lo, hi, k, j)
                if want is None:
                    refused += 1
                    continue
                row = int(ok[:j].sum())  # the inputs hold only the ok markets, in order
                np.testing.assert_allclose(x[row], pred.normalize(want), rtol=2e-5, atol=2e-5)
                compared += 1
        lo = hi
    assert compared > 800 and refused > 20 and compiled == compared
    assert state.ts.shape[1] <= max(rows, 2048)  # bounded memory: compaction keeps it small


def test_compaction_keeps_only_the_recent_rows_and_replays_are_ignored() -> None:
    book, trades = synthetic_market(2000, seed=1, levels=10)
    state = LiveState(keep_ms=20_000, rows=256, trades=256)
    for lo in range(0, 2000, 50):
        t_lo = int(np.searchsorted(trades.ts, book.ts[lo - 1], side="right")) if lo else 0
        t_hi = int(np.searchsorted(trades.ts, book.ts[lo + 49], side="right"))
        cols = column_batch(book, trades, lo, lo + 50, t_lo, t_hi)
        state.append(batchwire.from_columns({"KRW-A": cols}))
        state.append(batchwire.from_columns({"KRW-A": cols}))  # a redelivered batch adds nothing
    m = state.index["KRW-A"]
    assert state.ts.shape[1] == 256  # never grew: the expired rows made room
    assert state.newest_ts(m) == int(book.ts[-1])
    kept = state.ts[m, : state.rows(m)]
    assert np.all(np.diff(kept) > 0)
    assert kept[-1] - kept[0] < 20_000 + 256 * 250


def test_packed_wire_round_trip_and_bad_blocks() -> None:
    packed = batchwire.pack(
        {
            "KRW-A": [
                (1000, [(101.0, 99.0, 1.5, 2.5), (102.0, 98.0, 3.0, 4.0)]),
                (1200, [(101.0, 100.0, 1.0, 1.0)]),
            ]
        },
        {"KRW-A": [(1100, 101.0, 0.5, "BID")], "KRW-B": [(900, 5.0, 1.0, "ASK")]},
    )
    back = batchwire.decode(batchwire.encode(packed))
    assert back.codes == ("KRW-A", "KRW-B")
    assert back.book_n.tolist() == [2, 0] and back.trade_n.tolist() == [1, 1]
    assert back.book[0, :, 1].tolist() == [102.0, 3.0, 98.0, 4.0]  # ask_px, ask_sz, bid_px, bid_sz
    assert np.isnan(back.book[1, :, 1]).all()  # the second book has one level
    assert back.t_side.tolist() == [1, -1]
    body = batchwire.encode(packed)
    for broken in ({**body, "v": 9}, {**body, "book_n": [5, 0]}, {**body, "ts": "%%%"}, {"v": 1}):
        with pytest.raises(batchwire.BatchFormatError):
            batchwire.decode(broken)
    raw = batchwire.decode(batchwire.encode(packed, binary=True))  # a transport that carries raw bytes
    assert raw.codes == back.codes and np.array_equal(raw.book, back.book, equal_nan=True)


@pytest.mark.parametrize("n", [*range(0, 12), 100, 4097])
def test_compiled_base64_matches_the_standard_library(n: int) -> None:
    import base64

    data = np.random.default_rng(n).integers(0, 256, size=n, dtype=np.uint8).tobytes()
    text = base64.b64encode(data).decode()
    assert batchwire.b64decode(text).tobytes() == data == batchwire.b64decode(text.encode()).tobytes()


@pytest.mark.parametrize("text", ["A===", "AB=C", "ab$d", "abc", "Zm9v\n", "Zm9vYg=", "é===", "====", "Zm 9"])
def test_compiled_base64_refuses_what_validate_refuses(text: str) -> None:
    import base64
    import binascii

    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode(text, validate=True)
    with pytest.raises(ValueError):
        batchwire.b64decode(text)


def test_time_major_inputs_predict_exactly_like_a_batch_major_copy() -> None:
    pred = random_predictor(window=20)
    F = len(pred.feature_names)
    time_major = np.random.default_rng(3).normal(size=(20, 7, F)).astype(np.float32)
    view = time_major.transpose(1, 0, 2)  # what LiveState.model_inputs returns
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(pred.predict_normalized(view), pred.predict_normalized(view.copy()))
