"""Synthetic market over hours, unpaced: spread, one-minute volatility and depth per market class.

For every class in ``market.upbit_sim.calibration.MARKET_CLASSES`` (a 150M-KRW coin with a 1,000 tick ...
a sub-10 KRW coin) and each seed: the spread in ticks (median, p99, max; sampled once a second), the
realised one-minute volatility over its target (1.00 = on target; the baseline every class is measured
against), and the depth within the first 10 published levels in the last hour over the first (1.00 =
a stable book shape). Usage: ``python bench/bench_sim_stationarity.py [--hours 6] [--seeds 1,2,3]
[--markets KRW-BTC,...] [--jobs 3]``; the figures in docs/simulator.md come from the defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from market.upbit_sim.calibration import MARKET_CLASSES, SoakStats, market_soak  # noqa: E402


def one(args: tuple[str, float, int]) -> tuple[SoakStats, float]:
    code, hours, seed = args
    c0 = time.process_time()
    return market_soak(code=code, hours=hours, seed=seed), time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--markets", default=",".join(MARKET_CLASSES))
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    runs = [(m, a.hours, int(s)) for m in a.markets.split(",") for s in a.seeds.split(",")]
    print(f"{a.hours:g} simulated hours per run; spread in ticks; vol = realised / target one-minute vol")
    cols = f"{'median':>6} {'p99':>5} {'max':>5} {'vol':>5} {'depth':>6}"
    print(f"{'market':10} {'price':>12} seed {cols}  cpu-s")
    with ProcessPoolExecutor(a.jobs) as pool:
        for st, cpu in pool.map(one, runs):
            print(
                f"{st.code:10} {MARKET_CLASSES.get(st.code, 0):>12,.2f} {st.seed:4} {st.spread_median:6.0f} "
                f"{st.spread_p99:5.0f} {st.spread_ticks.max():5.0f} {st.vol_ratio:5.2f} {st.depth_ratio:6.2f}"
                f"  {cpu:5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
