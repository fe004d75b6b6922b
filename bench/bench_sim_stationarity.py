"""Synthetic market over hours, unpaced: spread, one-minute volatility and depth per market class.

For every class in ``market.upbit_sim.calibration.MARKET_CLASSES`` (a 150M-KRW coin with a 1,000 tick ...
a sub-10 KRW coin) and each seed: the spread in ticks (median, p99, max; sampled once a second), the
realised one-minute volatility over its target (1.00 = on target; the baseline every class is measured
against), and the depth within the first 10 published levels in the last hour over the first (1.00 =
a stable book shape). Usage: ``python bench/bench_sim_stationarity.py [--hours 6] [--seeds 1,2,3]
[--markets KRW-BTC,...] [--jobs 3]``; the figures in docs/simulator.md come from the defaults.

``--calibrate D:HOURS,...`` instead re-measures rows of ``synthetic._VOL_CALIBRATION`` (the routine is
``market.upbit_sim.calibration.calibration_point``: KRW-XRP at depth scale D, the seeds pooled) and prints
them in the table's form with the number of minutes whose mid moved (the information behind each row).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from market.upbit_sim.calibration import (  # noqa: E402
    MARKET_CLASSES,
    CalibrationPoint,
    SoakStats,
    calibration_point,
    market_soak,
    soak_hours,
)


def calibrate(args: tuple[float, float, tuple[int, ...]]) -> tuple[CalibrationPoint, float]:
    depth_scale, hours, seeds = args
    c0 = time.process_time()
    return calibration_point(depth_scale=depth_scale, hours=hours, seeds=seeds), time.process_time() - c0


def one(args: tuple[str, float, int]) -> tuple[SoakStats, float]:
    code, hours, seed = args
    c0 = time.process_time()
    return market_soak(code=code, hours=hours, seed=seed), time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=0.0, help="per run; 0 = soak_hours (>= 6, per class)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--markets", default=",".join(MARKET_CLASSES))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--calibrate", default="", help="D:HOURS,... re-measure _VOL_CALIBRATION rows")
    a = ap.parse_args()
    seeds = tuple(int(s) for s in a.seeds.split(","))
    if a.calibrate:
        points = [(float(d), float(h), seeds) for d, h in (x.split(":") for x in a.calibrate.split(","))]
        print(f"depth scale D -> std of one-minute mid changes in ticks, seeds {a.seeds} pooled")
        with ProcessPoolExecutor(a.jobs) as pool:
            for pt, cpu in pool.map(calibrate, points):
                print(
                    f"({pt.depth_scale:g}, {pt.ticks:.3g}),  # {pt.hours:g} h x {pt.seeds}, "
                    f"{pt.moves} minutes moved, {cpu:.0f} cpu-s",
                    flush=True,
                )
        return
    runs = [(m, a.hours or soak_hours(m), s) for m in a.markets.split(",") for s in seeds]
    print("spread in ticks; vol = realised / target one-minute vol; depth = last hour / first")
    cols = f"{'median':>6} {'p99':>5} {'max':>5} {'vol':>5} {'depth':>6}"
    print(f"{'market':10} {'price':>12} {'hours':>5} seed {cols}  cpu-s")
    with ProcessPoolExecutor(a.jobs) as pool:
        for st, cpu in pool.map(one, runs):
            print(
                f"{st.code:10} {MARKET_CLASSES.get(st.code, 0):>12,.2f} {st.hours:5g} {st.seed:4} "
                f"{st.spread_median:6.0f} {st.spread_p99:5.0f} {st.spread_ticks.max():5.0f} "
                f"{st.vol_ratio:5.2f} {st.depth_ratio:6.2f}  {cpu:5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
