"""Backtester: hand-computed fills (walking levels, both fees, minimum total, latency, cool-down, ticks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from mlmodel.backtest import BacktestConfig, run_backtest
from tests.mlmodel.synth import Levels, book_from_rows, synthetic_market

BIG = 0.5  # a prediction far beyond any threshold + cost


def _cfg(**kw: Any) -> BacktestConfig:
    """Hand-checkable defaults: no threshold, latency, cool-down or final liquidation unless asked for."""
    base = BacktestConfig(
        threshold=0.0,
        latency_ms=0,
        cooldown_ms=0,
        close_at_end=False,
        initial_cash=100_000.0,
        order_krw=5_000.0,
    )
    return replace(base, **kw)


def test_market_buy_walks_two_levels_and_pays_the_fee() -> None:
    book = book_from_rows([0, 1000], [[(1000, 3), (1001, 10)]] * 2, [[(999, 10)]] * 2)
    res = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg())
    (fill,) = res.fills
    vol2 = 1.99800199  # (5000 - 3000) / 1001 floored to 8 decimals
    assert fill.side == "buy" and fill.levels_walked == 2
    assert fill.volume == pytest.approx(3 + vol2, abs=1e-12)
    assert fill.funds == pytest.approx(3000 + vol2 * 1001, abs=1e-9)
    assert fill.fee == pytest.approx(fill.funds * 0.0005, abs=1e-12)
    assert res.metrics["final_cash"] == pytest.approx(100_000 - fill.funds * 1.0005, abs=1e-9)
    # Equity marks the position at the best bid.
    assert res.equity[-1] == pytest.approx(res.metrics["final_cash"] + (3 + vol2) * 999, abs=1e-9)


def test_round_trip_pays_both_fees() -> None:
    book = book_from_rows([0, 1000], [[(1000, 100)], [(1011, 100)]], [[(999, 100)], [(1010, 100)]])
    res = run_backtest(book, np.array([0, 1]), np.array([BIG, -BIG]), config=_cfg())
    buy, sell = res.fills
    assert (buy.side, buy.volume, buy.funds, buy.fee) == ("buy", 5.0, 5000.0, 2.5)
    assert (sell.side, sell.volume, sell.funds) == ("sell", 5.0, 5050.0)
    assert sell.fee == pytest.approx(2.525)
    assert res.metrics["net_pnl"] == pytest.approx(5050 - 2.525 - 5002.5)
    assert res.metrics["fees"] == pytest.approx(5.025)
    assert res.metrics["n_round_trips"] == 1 and res.metrics["hit_rate"] == 1.0
    assert res.metrics["turnover"] == pytest.approx((5000 + 5050) / 100_000)
    assert res.metrics["final_position"] == 0.0


def test_orders_under_the_minimum_total_are_refused() -> None:
    book = book_from_rows([0, 1000], [[(1000, 100)]] * 2, [[(999, 100)]] * 2)
    res = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg(order_krw=4_999.0))
    assert res.fills == []
    assert [(r.side, r.reason) for r in res.rejections] == [("buy", "under_min_total")]
    assert res.metrics["net_pnl"] == 0.0


def test_a_position_worth_less_than_the_minimum_cannot_be_sold() -> None:
    book = book_from_rows([0, 1000], [[(1000, 100)], [(901, 100)]], [[(999, 100)], [(900, 100)]])
    res = run_backtest(book, np.array([0, 1]), np.array([BIG, -BIG]), config=_cfg())
    assert [f.side for f in res.fills] == ["buy"]
    assert [(r.side, r.reason) for r in res.rejections] == [("sell", "under_min_total")]
    assert res.metrics["final_position"] == 5.0


@pytest.mark.parametrize(("latency", "price"), [(0, 1000.0), (99, 1000.0), (150, 1002.0), (250, 1005.0)])
def test_latency_fills_against_the_book_in_force_at_arrival(latency: int, price: float) -> None:
    asks: Levels = [[(1000, 100)], [(1002, 100)], [(1005, 100)]]
    bids: Levels = [[(999, 100)], [(1001, 100)], [(1004, 100)]]
    book = book_from_rows([0, 100, 200], asks, bids)
    res = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg(latency_ms=latency))
    (fill,) = res.fills
    assert fill.avg_price == price
    assert fill.arrival_ts == latency


def test_cool_down_blocks_orders_until_it_has_passed() -> None:
    n = 6
    book = book_from_rows([i * 100 for i in range(n)], [[(1000, 100)]] * n, [[(999, 100)]] * n)
    pred = np.array([BIG, -BIG, -BIG, -BIG, BIG, -BIG])
    res = run_backtest(book, np.arange(n), pred, config=_cfg(cooldown_ms=250, order_krw=10_000.0))
    # buy at 0; sells at 100 and 200 fall in the cool-down; sell at 300; buy at 400 is blocked (until 550).
    assert [(f.side, f.decision_ts) for f in res.fills] == [("buy", 0), ("sell", 300)]


def test_cost_rule_needs_threshold_plus_both_fees_plus_half_spread() -> None:
    # mid 1000, spread 2 -> half-spread 0.1 %; fees 0.1 %; threshold 0.05 % -> edge 0.25 %.
    book = book_from_rows([0, 1000], [[(1001, 100)]] * 2, [[(999, 100)]] * 2)
    cfg = _cfg(threshold=0.0005)
    assert run_backtest(book, np.array([0]), np.array([0.0024]), config=cfg).fills == []
    res = run_backtest(book, np.array([0]), np.array([0.0026]), config=cfg)
    assert len(res.fills) == 1 and res.fills[0].cost == pytest.approx(0.002)


def test_marketable_limit_respects_the_tick_grid_cap() -> None:
    book = book_from_rows([0, 1000], [[(1000, 3), (1001, 2), (1002, 100)]] * 2, [[(999, 100)]] * 2)
    res = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg(order_krw=10_000.0, limit_ticks=1))
    (fill,) = res.fills
    assert fill.volume == 5 and fill.funds == 3 * 1000 + 2 * 1001  # the 1002 level is past the cap


def test_close_at_end_liquidates_and_buy_and_hold_is_reported() -> None:
    book = book_from_rows([0, 60_000], [[(1000, 100)], [(1021, 100)]], [[(999, 100)], [(1020, 100)]])
    res = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg(close_at_end=True))
    assert [f.reason for f in res.fills] == ["signal", "end"]
    expected = 5 * 1020 * (1 - 0.0005) - 5000 * 1.0005
    assert res.metrics["net_pnl"] == pytest.approx(expected)
    assert res.metrics["buy_hold_pnl"] == pytest.approx(expected)  # same trade here


def test_position_limit_allows_scaling_in_up_to_the_cap() -> None:
    n = 4
    book = book_from_rows([i * 100 for i in range(n)], [[(1000, 1000)]] * n, [[(999, 1000)]] * n)
    res = run_backtest(book, np.arange(n), np.full(n, BIG), config=_cfg(max_position_krw=12_000.0))
    # 5000 + 5000 fits; a third buy would exceed the cap (room 2000 - fees < minimum total: nothing sent).
    assert [f.side for f in res.fills] == ["buy", "buy"]
    assert res.rejections == []


def test_metrics_are_finite_on_a_random_replay() -> None:
    book, _ = synthetic_market(3000, seed=5)
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.004, 3000)
    res = run_backtest(book, np.arange(3000), pred, config=BacktestConfig(cooldown_ms=1000))
    assert res.metrics["n_fills"] > 2
    assert all(np.isfinite(v) for v in res.metrics.values())
    assert 0 <= res.metrics["max_drawdown"] < 1
    assert res.equity.shape == res.equity_ts.shape == (3000,)


def test_a_buy_is_capped_by_cash_and_refused_when_cash_is_short() -> None:
    book = book_from_rows([0, 1000], [[(1000, 100)]] * 2, [[(999, 100)]] * 2)
    res = run_backtest(
        book, np.array([0]), np.array([BIG]), config=_cfg(initial_cash=6_000.0, order_krw=10_000.0)
    )
    (fill,) = res.fills
    assert fill.funds + fill.fee <= 6_000.0 and fill.funds > 5_990.0
    short = run_backtest(book, np.array([0]), np.array([BIG]), config=_cfg(initial_cash=4_000.0))
    assert short.fills == [] and [r.reason for r in short.rejections] == ["insufficient_funds"]


def test_dust_left_by_a_thin_book_closes_the_trip_and_does_not_block_new_buys() -> None:
    # Only 6 units bid: selling 10 leaves 4 units (~4,000 KRW), under the minimum order total: dust.
    n = 3
    book = book_from_rows([0, 100, 200], [[(1000, 100)]] * n, [[(999, 6)]] * n)
    res = run_backtest(book, np.arange(n), np.array([BIG, -BIG, BIG]), config=_cfg(order_krw=10_000.0))
    assert [f.side for f in res.fills] == ["buy", "sell", "buy"]
    assert res.fills[1].volume == 6 and res.metrics["n_round_trips"] == 1
    assert res.rejections == []  # the dust is not retried as a sell


def test_a_lot_is_sold_once_the_horizon_has_passed_and_the_prediction_no_longer_clears_the_edge() -> None:
    # One row a second; buy at 0 on a strong call; the prediction then fades to 0 (inside the edge) at 2 s.
    n = 12
    book = book_from_rows(list(range(0, n * 1000, 1000)), [[(1000, 100)]] * n, [[(999, 100)]] * n)
    pred = np.array([BIG, BIG, 0.0, 0.0, BIG, BIG, BIG, BIG, 0.0, 0.0, 0.0, 0.0])
    plain = run_backtest(book, np.arange(n), pred, config=_cfg(order_krw=10_000.0))
    assert [f.side for f in plain.fills] == ["buy"]  # the sell signal alone never comes
    res = run_backtest(book, np.arange(n), pred, config=_cfg(order_krw=10_000.0, horizon_s=3.0))
    # Held 3 s at row 3 with a flat call: sold; bought again at 4; still a buy at 7 (held 3 s): kept;
    # sold at 8 (held 4 s, flat call).
    assert [(f.side, f.decision_ts, f.reason) for f in res.fills] == [
        ("buy", 0, "signal"),
        ("sell", 3000, "horizon"),
        ("buy", 4000, "signal"),
        ("sell", 8000, "horizon"),
    ]
    assert res.metrics["n_round_trips"] == 2
    # A predicted fall beyond the edge still sells before the horizon.
    early = run_backtest(
        book, np.arange(3), np.array([BIG, -BIG, 0.0]), config=_cfg(order_krw=10_000.0, horizon_s=60.0)
    )
    assert [(f.side, f.reason) for f in early.fills] == [("buy", "signal"), ("sell", "signal")]
    # The cool-down after the buy (5 s) skips the flat calls at 2-3 s; the next flat call is at 8 s.
    cool = run_backtest(
        book, np.arange(n), pred, config=_cfg(order_krw=10_000.0, horizon_s=1.0, cooldown_ms=5000)
    )
    assert [(f.side, f.decision_ts) for f in cool.fills][:2] == [("buy", 0), ("sell", 8000)]
