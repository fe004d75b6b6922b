"""Ticker and candle invariants of the simulator, from the very first moment: every price on the KRW tick
grid, the last price inside today's range, candles with low <= open/close <= high, change fields that agree
with the previous close."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from market.upbit.protocol import is_on_tick
from market.upbit_sim.server import SimConfig, Simulator
from market.upbit_sim.stats import DAY

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP", "KRW-DOGE", "KRW-FOO"]
# A start 20 s before a UTC midnight: the checks also run across the day roll.
START_MS = 1_764_028_800_000 - 20_000


def _on_tick(x: float) -> bool:
    return is_on_tick(Decimal(repr(float(x))))


def _check_ticker(t: dict[str, Any]) -> None:
    where = f"{t['market']} {t}"
    lo, hi, px, op, pcp = (
        t["low_price"], t["high_price"], t["trade_price"], t["opening_price"], t["prev_closing_price"],
    )  # fmt: skip
    for name in ("opening_price", "high_price", "low_price", "trade_price", "prev_closing_price"):
        assert _on_tick(t[name]), f"{name} off the tick grid: {where}"
    assert lo <= px <= hi, where
    assert lo <= op <= hi, where
    diff = Decimal(repr(px)) - Decimal(repr(pcp))
    assert Decimal(repr(t["signed_change_price"])) == diff, where
    assert Decimal(repr(t["change_price"])) == abs(diff), where
    assert t["change"] == ("RISE" if diff > 0 else "FALL" if diff < 0 else "EVEN"), where
    assert t["signed_change_rate"] == pytest.approx(float(diff) / pcp, rel=1e-6, abs=1e-10), where
    assert t["change_rate"] == pytest.approx(abs(t["signed_change_rate"]), abs=1e-10), where


def _check_candles(rows: list[dict[str, Any]]) -> None:
    assert rows
    for c in rows:
        o, h, lo, cl = c["opening_price"], c["high_price"], c["low_price"], c["trade_price"]
        assert all(_on_tick(x) for x in (o, h, lo, cl)), c
        assert lo <= o <= h and lo <= cl <= h, c


@pytest.mark.parametrize("seed", [1, 2, 5, 11])
def test_tickers_and_candles_are_consistent_at_every_moment(seed: int) -> None:
    sim = Simulator(SimConfig(markets=MARKETS, seed=seed, start_ms=START_MS, speed=1.0))
    for step in range(9):  # the start, then every 5 s of market time (across midnight UTC)
        now = START_MS + step * 5_000
        if step:
            sim.step(now)
        for m in MARKETS:
            st = sim.stats[m]
            t = st.ticker_rest(now)
            _check_ticker(t)
            minutes = st.candles("1", count=200, to_ms=None)
            _check_candles(minutes)
            _check_candles(st.candles("60", count=48, to_ms=None))
            days = st.candles("days", count=200, to_ms=None)
            _check_candles(days)
            for d in days:
                assert _on_tick(d["prev_closing_price"]), d
            if step == 0:
                # The history ends where the live stream starts: no jump between chart and ticker.
                assert minutes[0]["trade_price"] == t["trade_price"]
                assert days[0]["trade_price"] == t["trade_price"]
                assert len(days) == 200 and len(minutes) == 200
            if now % DAY < 5_000 and step:  # a new UTC day: today's range restarts from today's trades
                assert t["opening_price"] == days[0]["opening_price"]
