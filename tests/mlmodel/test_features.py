"""Features use only data at or before each snapshot, and compute what their names say."""

from __future__ import annotations

import numpy as np
import pytest

from market.dayfiles import BookArrays, TradeArrays
from mlmodel.features import FeatureConfig, compute_features, feature_names, segments
from mlmodel.ticks import constant_tick_fn
from tests.mlmodel.synth import book_from_rows, synthetic_market

TICK = constant_tick_fn(1.0)


def _scramble_after(
    book: BookArrays, trades: TradeArrays, t_idx: int, seed: int
) -> tuple[BookArrays, TradeArrays]:
    """Replace every book value after snapshot t and every trade after ts[t] by different random values."""
    rng = np.random.default_rng(seed)
    cut = t_idx + 1
    ask_px, bid_px = book.ask_px.copy(), book.bid_px.copy()
    ask_sz, bid_sz = book.ask_sz.copy(), book.bid_sz.copy()
    shift = rng.integers(-20, 20, len(book) - cut).astype(float)[:, None]
    ask_px[cut:] += shift
    bid_px[cut:] += shift
    ask_sz[cut:] = rng.lognormal(4, 1, ask_sz[cut:].shape)
    bid_sz[cut:] = rng.lognormal(4, 1, bid_sz[cut:].shape)
    ts = book.ts.copy()
    ts[cut:] += rng.integers(0, 50)  # later snapshots may move in time too (still after t)
    later = trades.ts > book.ts[t_idx]
    vol, side, price = trades.volume.copy(), trades.side.copy(), trades.price.copy()
    vol[later] = rng.lognormal(3, 1, later.sum())
    side[later] = -side[later]
    price[later] += 7
    return (
        BookArrays(ts=ts, ask_px=ask_px, ask_sz=ask_sz, bid_px=bid_px, bid_sz=bid_sz),
        TradeArrays(ts=trades.ts, price=price, volume=vol, side=side),
    )


@pytest.mark.parametrize("t_idx", [0, 1, 57, 400, 1199])
def test_features_at_t_do_not_change_when_the_future_changes(t_idx: int) -> None:
    book, trades = synthetic_market(1200, seed=3)
    before = compute_features(book, trades, tick_fn=TICK)
    book2, trades2 = _scramble_after(book, trades, t_idx, seed=t_idx)
    after = compute_features(book2, trades2, tick_fn=TICK)
    np.testing.assert_array_equal(before.X[: t_idx + 1], after.X[: t_idx + 1])
    np.testing.assert_array_equal(before.valid[: t_idx + 1], after.valid[: t_idx + 1])
    if t_idx + 1 < len(book):  # the scramble really did change the future rows
        assert not np.array_equal(before.X[t_idx + 1 :], after.X[t_idx + 1 :])


def test_a_trade_at_exactly_the_snapshot_time_counts_and_a_later_one_does_not() -> None:
    book = book_from_rows([0, 1000, 2000], [[(101, 5)]] * 3, [[(100, 5)]] * 3, levels=1)
    cfg = FeatureConfig(levels=1, depths=(1,), trade_windows_s=(5.0,))

    def tflow(trade_ts: list[int]) -> np.ndarray:
        trades = TradeArrays(
            ts=np.array(trade_ts, dtype=np.int64),
            price=np.full(len(trade_ts), 101.0),
            volume=np.ones(len(trade_ts)),
            side=np.ones(len(trade_ts), dtype=np.int8),
        )
        return compute_features(book, trades, config=cfg, tick_fn=TICK).column("tcount_5s")

    np.testing.assert_allclose(tflow([1000]), np.log1p([0, 1, 1]))
    np.testing.assert_allclose(tflow([1001]), np.log1p([0, 0, 1]))


def test_feature_values_on_a_hand_built_book() -> None:
    # Snapshot 1: the bid queue grows by 3 at the same price -> e = +3; snapshot 2: the ask queue shrinks
    # by 2 at the same price -> e = +2.
    book = book_from_rows(
        [0, 200, 400],
        [[(101, 4), (102, 6)], [(101, 4), (102, 6)], [(101, 2), (102, 6)]],
        [[(100, 2), (99, 8)], [(100, 5), (99, 8)], [(100, 5), (99, 8)]],
        levels=2,
    )
    cfg = FeatureConfig(
        levels=2,
        depths=(1, 2),
        ofi_windows_s=(1.0,),
        trade_windows_s=(1.0,),
        vol_windows_s=(1.0,),
        return_windows_s=(1.0,),
    )
    f = compute_features(book, None, config=cfg, tick_fn=TICK)
    assert f.names == feature_names(cfg)
    np.testing.assert_allclose(f.column("spread_ticks"), [1, 1, 1])
    np.testing.assert_allclose(f.column("spread_bps"), 1 / 100.5 * 1e4, rtol=1e-6)
    micro0 = (101 * 2 + 100 * 4) / 6
    np.testing.assert_allclose(f.column("microprice_bps")[0], (micro0 - 100.5) / 100.5 * 1e4, rtol=1e-5)
    np.testing.assert_allclose(f.column("imb_1"), [(2 - 4) / 6, (5 - 4) / 9, (5 - 2) / 7], rtol=1e-6)
    np.testing.assert_allclose(f.column("imb_2")[0], (10 - 10) / 20, atol=1e-7)
    np.testing.assert_allclose(f.column("ask_logsz_2"), np.log1p(6), rtol=1e-6)
    np.testing.assert_allclose(f.column("bid_px_bps_2"), (100.5 - 99) / 100.5 * 1e4, rtol=1e-6)
    # OFI (CKS): e1 = +3 (bid queue +3), e2 = +2 (ask queue -2). Depth = mean of (qa1+qb1)/2 in the window.
    d = np.array([3.0, 4.5, 3.5])
    expected = [0.0, 3 / d[:2].mean(), 5 / d.mean()]
    np.testing.assert_allclose(f.column("ofi_1s"), expected, rtol=1e-6)
    np.testing.assert_allclose(f.column("rvol_bps_1s"), 0.0)
    assert f.valid.all()


def test_ofi_sign_follows_price_moves_and_gaps_reset_it() -> None:
    # Bid price rises (bid side e = +q_new), then a gap, then the ask price falls (e = -q_new).
    book = book_from_rows(
        [0, 200, 60_000, 60_200],
        [[(102, 4)], [(102, 4)], [(102, 4)], [(101.5, 3)]],
        [[(100, 2)], [(101, 5)], [(101, 5)], [(101, 5)]],
        levels=1,
    )
    cfg = FeatureConfig(levels=1, depths=(1,), ofi_windows_s=(100.0,), max_gap_ms=10_000)
    f = compute_features(book, None, config=cfg, tick_fn=constant_tick_fn(0.5))
    ofi = f.column("ofi_100s")
    assert list(f.segment) == [0, 0, 1, 1]
    assert ofi[1] > 0  # bid uptick: +5
    # Across the gap (200 -> 60000 ms) nothing is counted and the 100 s window stops at the segment start.
    assert ofi[2] == 0.0
    depth = np.mean([(4 + 5) / 2, (3 + 5) / 2])
    np.testing.assert_allclose(ofi[3], -3 / depth, rtol=1e-6)  # ask downtick: -3


def test_segments_split_on_time_jumps_and_recorded_gaps() -> None:
    ts = np.array([0, 200, 400, 20_000, 20_200, 20_400], dtype=np.int64)
    assert segments(ts, 10_000).tolist() == [0, 0, 0, 1, 1, 1]
    gaps = np.array([[250, 300]])
    assert segments(ts, 10_000, gaps).tolist() == [0, 0, 1, 2, 2, 2]


def test_one_sided_books_and_missing_levels_are_marked_invalid_or_padded() -> None:
    book = book_from_rows(
        [0, 200, 400],
        [[(101, 1)], [], [(101, 1), (102, 1)]],
        [[(100, 1), (99, 2)], [(100, 1)], [(100, 1)]],
        levels=3,
    )
    f = compute_features(book, None, config=FeatureConfig(levels=3, depths=(1, 3)), tick_fn=TICK)
    assert f.valid.tolist() == [True, False, True]
    # Missing ask levels 2..3 of row 0 sit one tick further out with log-size 0.
    np.testing.assert_allclose(f.column("ask_px_bps_3")[0], (103 - 100.5) / 100.5 * 1e4, rtol=1e-6)
    assert f.column("ask_logsz_3")[0] == 0.0


def test_unsorted_timestamps_are_refused() -> None:
    book = book_from_rows([0, 200, 100], [[(101, 1)]] * 3, [[(100, 1)]] * 3, levels=1)
    with pytest.raises(ValueError, match="non-decreasing"):
        compute_features(book, None, tick_fn=TICK)


def test_config_round_trips_and_names_match_columns() -> None:
    cfg = FeatureConfig(levels=5, depths=(1, 5))
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    book, trades = synthetic_market(300, seed=1, levels=7)
    f = compute_features(book, trades, config=cfg, tick_fn=TICK)
    assert f.X.shape == (300, len(feature_names(cfg)))
    assert f.X.dtype == np.float32


def test_a_long_series_featurised_in_row_chunks_equals_the_whole_at_once(monkeypatch) -> None:  # noqa: ANN001
    """Days of snapshots are featurised CHUNK_ROWS at a time (bounded memory); every value, validity flag and
    segment is the one the whole series gives, across chunk edges, time jumps and recorded gaps."""
    from mlmodel import features

    book, trades = synthetic_market(5000, seed=3, gap_at=2100, gap_ms=60_000)
    gaps = np.array([[int(book.ts[3500]) + 1, int(book.ts[3500]) + 50]])
    kw = {"tick_fn": constant_tick_fn(1.0), "gaps": gaps}
    whole = compute_features(book, trades, **kw)
    monkeypatch.setattr(features, "CHUNK_ROWS", 777)
    chunked = compute_features(book, trades, **kw)
    for name in ("ts", "mid", "bid1", "ask1", "X", "valid", "segment"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name), err_msg=name)
    assert chunked.names == whole.names and chunked.config == whole.config
    assert len(np.unique(whole.segment)) >= 3  # the gap and the recorded hole both crossed
