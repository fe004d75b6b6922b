"""Synthetic order-book model: seeded reproducibility, the tick grid, order-flow imbalance moving price."""

from __future__ import annotations

import numpy as np
import pytest

from market.upbit_sim.synthetic import SyntheticMarket, SyntheticParams, SyntheticSource


def test_same_seed_same_stream_and_other_seed_differs() -> None:
    a, ta = SyntheticMarket("KRW-BTC", seed=11, start_ms=1_000).generate(3000)
    b, tb = SyntheticMarket("KRW-BTC", seed=11, start_ms=1_000).generate(3000)
    c, _ = SyntheticMarket("KRW-BTC", seed=12, start_ms=1_000).generate(3000)
    for x, y in (
        (a.ask_px, b.ask_px),
        (a.ask_sz, b.ask_sz),
        (a.bid_px, b.bid_px),
        (a.ts, b.ts),
        (ta.price, tb.price),
    ):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.ask_sz, c.ask_sz)


def test_a_market_stream_does_not_depend_on_the_other_markets() -> None:
    one = SyntheticSource(["KRW-ETH"], seed=5, start_ms=0)
    two = SyntheticSource(["KRW-BTC", "KRW-ETH", "KRW-XRP"], seed=5, start_ms=0)
    u1 = one.advance(30_000)["KRW-ETH"]
    u2 = two.advance(30_000)["KRW-ETH"]
    assert u1.book == u2.book
    assert [(t.price, t.volume, t.ask_bid) for t in u1.trades] == [
        (t.price, t.volume, t.ask_bid) for t in u2.trades
    ]


def test_books_are_30_levels_on_the_krw_tick_grid_and_never_crossed() -> None:
    for code, tick in (("KRW-BTC", 1000.0), ("KRW-XRP", 1.0), ("KRW-ETH", 1000.0)):
        b, t = SyntheticMarket(code, seed=2).generate(5000)
        assert b.ask_px.shape == (5000, 30) and b.levels == 30
        assert np.all(b.ask_px[:, 0] > b.bid_px[:, 0])
        assert np.all(np.diff(b.ask_px, axis=1) > 0)  # asks ascend
        assert np.all(np.diff(b.bid_px, axis=1) < 0)  # bids descend
        assert np.all(np.mod(b.ask_px, tick) == 0) and np.all(np.mod(b.bid_px, tick) == 0)
        assert np.all(b.ask_sz > 0) and np.all(b.bid_sz > 0)
        assert np.array_equal(np.round(b.ask_sz, 8), b.ask_sz)  # 8-decimal sizes
        assert len(t) > 0 and set(np.unique(t.side)) == {-1, 1}
        assert np.all(np.diff(b.ts) >= 0)
        # trades happen at book prices
        assert np.all(np.mod(t.price, tick) == 0)


def test_order_flow_imbalance_moves_the_mid() -> None:
    """Cont-Kukanov-Stoikov: the mid change over an interval regresses on OFI with a positive slope."""
    b, _ = SyntheticMarket("KRW-BTC", seed=3).generate(40_000)
    pb, qb, pa, qa = b.bid_px[:, 0], b.bid_sz[:, 0], b.ask_px[:, 0], b.ask_sz[:, 0]
    e = (
        (pb[1:] >= pb[:-1]) * qb[1:]
        - (pb[1:] <= pb[:-1]) * qb[:-1]
        - (pa[1:] <= pa[:-1]) * qa[1:]
        + (pa[1:] >= pa[:-1]) * qa[:-1]
    )
    mid = (pa + pb) / 2
    k = 100
    n = (len(e) // k) * k
    ofi = e[:n].reshape(-1, k).sum(axis=1)
    dmid = (mid[k : n + 1 : k] - mid[0:n:k]) / 1000.0  # in ticks
    slope, _ = np.polyfit(ofi, dmid, 1)
    r = np.corrcoef(ofi, dmid)[0, 1]
    assert slope > 0
    assert r > 0.3
    assert mid.max() - mid.min() >= 5_000  # the price actually moves (>= 5 ticks)


def test_hawkes_market_orders_cluster() -> None:
    """Self-excitation: inter-trade gaps are over-dispersed compared with a Poisson stream (CV > 1)."""
    m = SyntheticMarket("KRW-BTC", seed=9, params=SyntheticParams())
    _, t = m.generate(60_000)
    starts = t.ts[np.r_[True, np.diff(t.ts) > 0]]  # one market order may print several levels at once
    gaps = np.diff(starts).astype(float)
    gaps = gaps[gaps > 0]
    assert gaps.std() / gaps.mean() > 1.0


def test_user_liquidity_taken_is_removed_from_the_model() -> None:
    m = SyntheticMarket("KRW-BTC", seed=4)
    book = m.book()
    best_price, best_size = book.asks[0]
    m.consume("ask", best_price, best_size)
    after = m.book()
    assert after.asks[0][0] > best_price  # the best ask moved up: market impact
    assert after.bids[0][0] < after.asks[0][0]


def test_paced_source_advances_to_the_requested_time() -> None:
    src = SyntheticSource(["KRW-BTC"], seed=1, start_ms=1_700_000_000_000)
    u = src.advance(1_700_000_010_000)["KRW-BTC"]
    assert u.book is not None and u.book.ts <= 1_700_000_010_000
    assert len(u.book.asks) == 30
    ids = [t.sequential_id for t in u.trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert src.advance(1_700_000_010_000) == {}  # nothing new without time passing


def _minute_vol(model: SyntheticMarket, minutes: int = 60) -> float:
    mids = [model.mid]
    for k in range(1, minutes + 1):
        model.run_until(model.start_ms + k * 60_000)
        mids.append(model.mid)
    return float(np.diff(np.log(mids)).std())


@pytest.mark.parametrize(
    ("code", "target"),
    [
        ("KRW-BTC", None),  # tick 1,000 at 150M KRW: a small tick, sweeps must clear many of them
        ("KRW-ETH", None),  # tick 1,000 at 5M KRW: a large tick, the mid must move rarely
        ("KRW-XRP", 0.001),  # a configured target (0.1 %/min)
    ],
)
def test_realised_minute_volatility_of_the_mid_is_near_the_target(code: str, target: float | None) -> None:
    """Over a simulated hour the one-minute log-return std of the mid is within 2x of the target, whatever
    the tick size relative to the price (0.045 %/min by default, like KRW-BTC)."""
    params = SyntheticParams() if target is None else SyntheticParams(target_vol=target)
    vol = _minute_vol(SyntheticMarket(code, seed=21, start_ms=0, params=params))
    assert params.target_vol / 2 <= vol <= params.target_vol * 2, (code, vol)


def test_per_market_volatility_is_configurable_on_the_source() -> None:
    src = SyntheticSource(["KRW-BTC", "KRW-SOL"], seed=3, volatility={"KRW-SOL": 0.002})
    assert src.models["KRW-BTC"].params.target_vol == SyntheticParams().target_vol
    assert src.models["KRW-SOL"].params.target_vol == 0.002
    # A calmer target means deeper queues relative to the takers' orders (and the other way round).
    assert src.models["KRW-SOL"].depth_scale < SyntheticMarket("KRW-SOL", seed=3).depth_scale
