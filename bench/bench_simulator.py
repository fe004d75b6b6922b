"""Upbit simulator throughput: how many order-book messages the synthetic source can produce per CPU-second.

  * model    -- ``SyntheticMarket.generate`` (event-by-event books into numpy arrays, 30 levels);
  * encode   -- ``frames.encode_orderbooks`` (Upbit DEFAULT JSON frames from those arrays);
  * both     -- model + encode, i.e. ready-to-send frames;
  * baseline -- the straightforward way: one model step, ``book()`` as Python tuples, a dict per level and
                ``json.dumps`` per message;
  * live     -- (unless ``--no-live``) the unpaced server (``speed=0``) streaming 4 markets over a real
                socket to a client in another process: frames received per wall-second and per CPU-second
                of the simulator process.

Figures are medians of ``--repeat`` runs, per CPU-second of this process (robust to other load on the
machine) and per wall-second. Usage: ``python bench/bench_simulator.py [--books N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from market.upbit_sim.frames import encode_orderbooks  # noqa: E402
from market.upbit_sim.server import SimConfig, SimulatorThread  # noqa: E402
from market.upbit_sim.synthetic import SyntheticMarket  # noqa: E402

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from websockets.sync.client import connect
    url, seconds, codes = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
    with connect(url, max_size=None, compression=None, open_timeout=10) as ws:
        ws.send(json.dumps([{"ticket": "bench"}, {"type": "orderbook", "codes": codes}]))
        for _ in codes:
            ws.recv(timeout=10)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            ws.recv(timeout=10)
            n += 1
        print(n, time.perf_counter() - t0)
    """
)


def timed(fn: Callable[[], int]) -> tuple[float, float]:
    """(items per CPU-second, items per wall-second) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    n = fn()
    return n / max(1e-9, time.process_time() - c0), n / max(1e-9, time.perf_counter() - w0)


def run_model(n: int, seed: int) -> int:
    return len(SyntheticMarket("KRW-BTC", seed=seed).generate(n)[0])


def run_both(n: int, seed: int) -> int:
    books, _ = SyntheticMarket("KRW-BTC", seed=seed).generate(n)
    return len(encode_orderbooks("KRW-BTC", books))


def run_baseline(n: int, seed: int) -> int:
    m = SyntheticMarket("KRW-BTC", seed=seed)
    for _ in range(n):
        m.step()
        b = m.book()
        units = [
            {"ask_price": a[0], "bid_price": c[0], "ask_size": a[1], "bid_size": c[1]}
            for a, c in zip(b.asks, b.bids, strict=True)
        ]
        json.dumps({"type": "orderbook", "code": "KRW-BTC", "timestamp": b.ts, "orderbook_units": units})
    return n


def run_live(seconds: float) -> tuple[float, float]:
    cfg = SimConfig(markets=MARKETS, speed=0, backfill=False, rate_limits={})
    with SimulatorThread(cfg) as sim:
        c0 = time.process_time()
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, sim.ws_url, str(seconds), ",".join(MARKETS)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
        cpu = time.process_time() - c0
    n, wall = out.stdout.split()
    return int(n) / float(wall), int(n) / max(1e-9, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--books", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=5.0)
    parser.add_argument("--no-live", action="store_true")
    args = parser.parse_args()
    n = args.books
    books, _ = SyntheticMarket("KRW-BTC", seed=1).generate(n)
    runs: dict[str, list[tuple[float, float]]] = {"model": [], "encode": [], "both": [], "baseline": []}
    for r in range(args.repeat):
        runs["model"].append(timed(lambda r=r: run_model(n, r + 1)))
        runs["encode"].append(timed(lambda: len(encode_orderbooks("KRW-BTC", books))))
        runs["both"].append(timed(lambda r=r: run_both(n, r + 1)))
        runs["baseline"].append(timed(lambda r=r: run_baseline(max(1, n // 5), r + 1)))
    cpu = {k: statistics.median(x[0] for x in v) for k, v in runs.items()}
    wall = {k: statistics.median(x[1] for x in v) for k, v in runs.items()}
    print(f"synthetic KRW-BTC, 30 levels, {n:,} books per run, median of {args.repeat} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"  {'':52s} {'msg/CPU-s':>10s} {'msg/wall-s':>11s}")
    labels = {
        "model": "model    books into numpy arrays",
        "encode": "encode   arrays -> Upbit JSON frames",
        "both": "both     model + encode (ready-to-send frames)",
        "baseline": "baseline step + book() + dict per level + json.dumps",
    }
    for k, label in labels.items():
        print(f"  {label:52s} {cpu[k]:>10,.0f} {wall[k]:>11,.0f}")
    verdict = "met" if cpu["model"] >= 50_000 else "NOT met"
    print(f"  ratio both/baseline = {cpu['both'] / cpu['baseline']:.2f}x; "
          f"model >= 50,000 books per CPU-second: {verdict}")  # fmt: skip
    if not args.no_live:
        per_wall, per_cpu = run_live(args.live_seconds)
        print(f"live: unpaced server -> separate-process client, {len(MARKETS)} markets, no compression: "
              f"{per_wall:,.0f} frames/wall-s, {per_cpu:,.0f} frames per simulator CPU-second")  # fmt: skip


if __name__ == "__main__":
    main()
