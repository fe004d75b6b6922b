"""Datasets: window ends, lazy window batches, spike periods, and the builder over collector day files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market import dayfiles
from market.dayfiles import BookArrays, TradeArrays
from mlmodel.dataset import (
    Normalizer,
    build_training_data,
    find_spike_periods,
    label_frame,
    load_frame,
    make_windowset,
    window_ends,
)
from mlmodel.features import compute_features
from mlmodel.ticks import constant_tick_fn
from tests.mlmodel.synth import synthetic_market

TICK = constant_tick_fn(1.0)


def test_window_ends_skip_invalid_rows_gaps_and_labels_that_peek_past_the_period() -> None:
    book, trades = synthetic_market(400, seed=1, gap_at=200)
    f = compute_features(book, trades, tick_fn=TICK)
    f.valid[50] = False
    lf = label_frame(f, horizon_s=2.0)
    W = 10
    ends = window_ends(lf, window=W)
    assert not np.any((ends >= 50) & (ends < 50 + W))  # no window contains the invalid row
    assert np.all(f.segment[ends] == f.segment[ends - W + 1])  # none straddles the gap
    assert np.isfinite(lf.y[ends]).all()
    t_end = int(f.ts[150])
    cut = window_ends(lf, window=W, t_end=t_end)
    assert (f.ts[cut] + 2000 < t_end).all() and cut.max() < 150


def test_window_batches_are_the_rows_up_to_each_end() -> None:
    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    ws = make_windowset(
        label_frame(compute_features(*synthetic_market(20, seed=0), tick_fn=TICK), horizon_s=1.0),
        X,
        np.array([4, 9]),
        window=3,
    )
    b = ws.batch(np.array([0, 1]))
    np.testing.assert_array_equal(b[0], X[2:5])
    np.testing.assert_array_equal(b[1], X[7:10])
    np.testing.assert_array_equal(ws.last_rows(), X[[4, 9]])


def test_normalizer_round_trip_and_constant_columns() -> None:
    X = np.c_[np.arange(10.0), np.ones(10)]
    n = Normalizer.fit(X)
    z = n.transform(X)
    assert np.allclose(z[:, 1], 0) and abs(float(z[:, 0].mean())) < 1e-6
    assert np.array_equal(Normalizer.from_dict(n.to_dict()).transform(X), z)


def test_spike_periods_find_an_injected_jump() -> None:
    ts = np.arange(0, 3_600_000, 1000, dtype=np.int64)
    rng = np.random.default_rng(0)
    mid = 1000 * np.exp(np.cumsum(rng.normal(0, 1e-4, ts.size)))
    mid[2000:] *= 1.03
    periods = find_spike_periods(ts, mid, window_s=60, k=6, pad_s=300)
    assert len(periods) == 1
    start, end = periods[0]
    assert start <= ts[2000] <= end and end - start < 1_000_000


def _write_day(root: Path, market: str, book: BookArrays, trades: TradeArrays) -> None:
    day = dayfiles.day_of(int(book.ts[0]))
    L = book.levels
    cols: dict[str, np.ndarray] = {
        "ts": book.ts,
        "recv_ts": book.ts,
        "total_ask_size": book.ask_sz.sum(1),
        "total_bid_size": book.bid_sz.sum(1),
    }
    for name, arr in (
        ("ask_price", book.ask_px),
        ("ask_size", book.ask_sz),
        ("bid_price", book.bid_px),
        ("bid_size", book.bid_sz),
    ):
        for i in range(L):
            cols[f"{name}_{i + 1}"] = arr[:, i]
    for kind, table in (
        ("orderbook", pa.table(cols, schema=dayfiles.orderbook_schema(L))),
        (
            "trade",
            pa.table(
                {
                    "ts": trades.ts,
                    "recv_ts": trades.ts,
                    "price": trades.price,
                    "volume": trades.volume,
                    "side": trades.side,
                    "sequential_id": np.arange(len(trades), dtype=np.int64),
                },
                schema=dayfiles.TRADE_SCHEMA,
            ),
        ),
    ):
        d = dayfiles.day_dir(root, kind, market, day)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / "part-00000.parquet")


def test_builder_reads_the_last_days_plus_older_spike_periods(tmp_path: Path) -> None:
    market = "KRW-TEST"
    first = int(dt.datetime(2026, 11, 20, 1, 0, tzinfo=dayfiles.KST).timestamp() * 1000)
    books = {}
    for k in range(4):
        book, trades = synthetic_market(3000, seed=10 + k, start_ms=first + k * 86_400_000, levels=5)
        if k == 0:  # a crash in the oldest day
            book = BookArrays(book.ts, book.ask_px.copy(), book.ask_sz, book.bid_px.copy(), book.bid_sz)
            book.ask_px[1500:] -= 60
            book.bid_px[1500:] -= 60
        books[k] = book
        _write_day(tmp_path, market, book, trades)
    f0 = compute_features(books[0], None, tick_fn=TICK)
    periods = find_spike_periods(f0.ts, f0.mid, window_s=30, k=5, pad_s=60)
    assert len(periods) == 1
    data = build_training_data(tmp_path, market, n_days=2, spike_periods=periods, horizon_s=5.0, tick_fn=TICK)
    assert [d.day for d in data.days] == [22, 23]
    assert len(data.recent) == 6000
    assert data.spikes is not None and data.spike_periods == tuple(periods)
    s = data.spikes.frame
    assert s.ts[0] >= periods[0][0] and s.ts[-1] <= periods[0][1]
    assert (s.ts[np.isfinite(data.spikes.y)] + 5000 <= periods[0][1]).all()
    # Features of the spike slice were computed with their full history (same as on the whole day).
    whole = load_frame(tmp_path, market, [dt.date(2026, 11, 20)], tick_fn=TICK)
    lo = int(np.searchsorted(whole.ts, s.ts[0]))
    np.testing.assert_array_equal(s.X, whole.X[lo : lo + len(s)])
    # End day limits the window; periods overlapping the recent days are skipped.
    older = build_training_data(
        tmp_path,
        market,
        end_day=dt.date(2026, 11, 21),
        n_days=2,
        spike_periods=periods,
        horizon_s=5.0,
        tick_fn=TICK,
    )
    assert [d.day for d in older.days] == [20, 21] and older.spikes is None


def test_an_imported_datasets_own_tick_and_fee_reach_the_features_and_the_backtest(tmp_path) -> None:  # noqa: ANN001
    """import_book records --tick and --fee-rate in the files; training measures the spread in that tick and
    charges that fee (collector data, which declares neither, keeps Upbit's KRW table and the setting)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from market import importer
    from mlmodel.dataset import DataTerms, data_terms
    from mlmodel.services.data import market_data_load
    from mlmodel.services.params import TrainParams

    t0, n = 1_700_000_000_000, 40
    cols: dict[str, list] = {"ts": [t0 + i * 1000 for i in range(n)]}
    for lvl in range(1, 4):  # a 2-KRW spread around 1000 (prices on a 0.5 grid)
        cols[f"ask_price_{lvl}"] = [1000.0 + lvl] * n
        cols[f"ask_size_{lvl}"] = [1.0 + lvl] * n
        cols[f"bid_price_{lvl}"] = [1000.0 - lvl] * n
        cols[f"bid_size_{lvl}"] = [2.0 + lvl] * n
    path = tmp_path / "book.csv"
    pcsv.write_csv(pa.table(cols), path)
    root = tmp_path / "data"
    opts = importer.ImportOptions(market="KRW-TEST", tick="0.5", fee_rate=0.002)
    result = importer.book_import(book_path=path, root=root, options=opts)
    params = TrainParams.from_dict({"market": "KRW-TEST", "data_dir": str(root), "feature_levels": 3})
    data = market_data_load(root=root, market="KRW-TEST", days=list(result.days), params=params)
    assert data.terms == DataTerms(tick="0.5", fee_rate=0.002)
    assert data.terms.fee(0.0005) == 0.002  # the backtest's fee (pipeline_run)
    spread_ticks = data.labelled.frame.column("spread_ticks")
    assert np.allclose(spread_ticks, 4.0)  # 2 KRW / 0.5, not / Upbit's 1-KRW tick
    assert data_terms(pa.table({"ts": [1]})) == DataTerms()  # collector data: the defaults
    bad = pa.table({"ts": [1]}).replace_schema_metadata({b"tick": b"nonsense"})
    with pytest.raises(Exception, match="nonsense"):
        data_terms(bad)
