"""The synthetic market stays a real-looking market for hours (issue 12 §3): run unpaced over hours of model
time, the spread stays at one tick (median) and a few at worst, the one-minute volatility on its target and
the book's depth shape where it started. Before the fix KRW-BTC's spread was 12,000 ticks after 30 minutes.

The normal suite runs the two classes that matter most (the small-tick KRW-BTC that drifted, a large-tick
coin); ``SIM_SOAK=1`` runs every price class over 6 hours and 3 seeds (``bench/bench_sim_stationarity.py``
prints the same matrix)."""

from __future__ import annotations

import os

import pytest

from market.upbit_sim.calibration import MARKET_CLASSES, SoakStats, market_soak

# Sweeps of a small-tick book clear several ticks at once (that is how KRW-BTC reaches its volatility), so
# its p99 is wider in ticks; 15 ticks of KRW-BTC are 0.01 % of the price.
P99_TICKS = {"KRW-BTC": 15}


def _check(st: SoakStats) -> None:
    where = (st.code, st.seed)
    assert st.spread_median == 1, where
    assert st.spread_p99 <= P99_TICKS.get(st.code, 3), (where, st.spread_p99)
    assert 0.75 <= st.vol_ratio <= 1.25, (where, st.vol_ratio)
    first = st.depth_by_hour[0]
    assert all(0.67 <= d / first <= 1.5 for d in st.depth_by_hour), (where, st.depth_by_hour / first)


@pytest.mark.parametrize(("code", "hours"), [("KRW-BTC", 6.0), ("KRW-ETH", 6.0)])
def test_spread_volatility_and_depth_stay_put_for_hours(code: str, hours: float) -> None:
    _check(market_soak(code=code, hours=hours, seed=1))


@pytest.mark.skipif(not os.environ.get("SIM_SOAK"), reason="long: set SIM_SOAK=1 (about 10 CPU-minutes)")
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("code", list(MARKET_CLASSES))
def test_every_price_class_for_six_hours(code: str, seed: int) -> None:
    _check(market_soak(code=code, hours=6.0, seed=seed))
