"""Sharded collectors on Redis leases (issue 16): CPU per process and takeover time after a SIGKILL.

The simulator (synthetic, paced, in this process) streams ``--markets`` markets. Three phases, all real
``manage.py collect`` processes writing day files:

1. baseline -- one collector with every market (``--leases off``, the embedded default);
2. sharded  -- ``--shards`` collectors (``--leases on``) splitting the same markets;
3. takeover -- ``--kills`` times: SIGKILL one shard, let the others take its markets over, start a
   replacement; the takeover time of a market is its ``takeover`` gap row's end (the new holder's first
   record) minus the moment of the kill.

CPU is user+system time of each collector process over the same ``--seconds`` window (per CPU-second, so a
loaded machine slows the wall clock, not the figure). Prints the per-process CPU of the sharded run against
the single collector (the headroom each process gains) and the sharded total against it (the cost of
sharding), and takeover median / p99 / max.

Usage: ``python bench/bench_collector_shards.py [--markets 60] [--shards 3] [--seconds 30] [--kills 3]``
(needs ``REDIS_URL`` or ``--redis``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")

from market import dayfiles  # noqa: E402
from market.upbit_sim.server import SimConfig, SimulatorThread  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(codes: list[str], ws_url: str, data: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OBSERVATOR_ROLE": "collector",
        "PYTHONUNBUFFERED": "1",
        "MARKET_PREDICTION_FEED": "false",
    }
    args = [sys.executable, "manage.py", "collect", "--markets", ",".join(codes), "--ws-url", ws_url,
            "--data-dir", str(data), "--no-fanout", "--no-predictions", *extra]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def holders(client, ns: str, codes: list[str]) -> dict[str, int]:  # noqa: ANN001
    values = client.mget([f"{ns}:lease:{m}" for m in codes])
    return {m: int(v.decode().split(":")[1]) for m, v in zip(codes, values, strict=True) if v}


def wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def soft_wait(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def measure(procs: list[subprocess.Popen[bytes]], seconds: float) -> list[float]:
    """CPU-seconds per wall second of each process over the window."""
    before = [cpu_seconds(p.pid) for p in procs]
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return [(cpu_seconds(p.pid) - b) / wall for p, b in zip(procs, before, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markets", type=int, default=60)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    if not args.redis:
        raise SystemExit("needs Redis: set REDIS_URL or pass --redis")
    import django

    django.setup()
    import redis

    codes = [f"KRW-S{i:03d}" for i in range(args.markets)]
    ns = f"bench:shards:{secrets.token_hex(4)}"
    client = redis.Redis.from_url(args.redis)
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    procs: list[subprocess.Popen[bytes]] = []
    cfg = SimConfig(
        markets=codes, seed=1, tick_ms=100, rate_limits={"websocket-connect": 1000}, backfill=False
    )
    sim = SimulatorThread(cfg)
    try:
        sim.start(timeout=180)  # many markets on a loaded machine take a while
        sim.call(lambda x: x.step(x.now_ms()))
        # 1. one collector, every market
        single = start(codes, sim.ws_url, work / "single", work / "single.log", "--leases", "off")
        procs.append(single)
        time.sleep(args.warmup)
        (base,) = measure([single], args.seconds)
        stop(single)
        # 2. N shards
        lease_args = ("--leases", "on", "--redis-url", args.redis, "--lease-namespace", ns)
        data = work / "sharded"
        shards = [
            start(codes, sim.ws_url, data, work / f"shard-{i}.log", *lease_args) for i in range(args.shards)
        ]
        procs += shards
        share = args.markets // args.shards

        def balanced() -> bool:
            held = holders(client, ns, codes)
            live = [p for p in shards if p.poll() is None]
            return len(held) == len(codes) and all(list(held.values()).count(p.pid) >= share for p in live)

        wait(balanced, 180, "balanced shards")
        time.sleep(args.warmup)
        per_shard = measure(shards, args.seconds)
        # 3. takeovers
        kills: list[int] = []
        for k in range(args.kills):
            victim = shards[k % len(shards)]
            time.sleep(3.0)  # let a renewal publish the latest records
            kills.append(int(time.time() * 1000))
            stop(victim, signal.SIGKILL)
            survivors = [p for p in shards if p.poll() is None]
            wait(lambda s=survivors: set(holders(client, ns, codes).values()) <= {p.pid for p in s}
                 and len(holders(client, ns, codes)) == len(codes), 60, "takeover")  # fmt: skip
            time.sleep(3.0)
            replacement = start(codes, sim.ws_url, data, work / f"shard-r{k}.log", *lease_args)
            procs.append(replacement)
            shards[shards.index(victim)] = replacement
            if not soft_wait(balanced, 120):
                print(f"  note: not balanced 120 s after replacement {k + 1} (shards starved of CPU?)")
        for p in shards:
            stop(p)
    finally:
        sim.stop()
        for p in procs:
            if p.poll() is None:
                stop(p, signal.SIGKILL)
        keys = list(client.scan_iter(f"{ns}:*"))
        if keys:
            client.delete(*keys)
        client.close()

    takeovers = []
    for code in codes:
        for day in dayfiles.list_days(data, "gap", code):
            for gap in dayfiles.read_day(data, "gap", code, day).to_pylist():
                if gap["reason"] == "takeover":
                    kill = max((k for k in kills if k <= gap["ts_end"]), default=None)
                    if kill is not None:
                        takeovers.append((gap["ts_end"] - kill) / 1000)
    duplicates = 0
    for code in codes:
        for day in dayfiles.list_days(data, "orderbook", code):
            ts = dayfiles.read_day(data, "orderbook", code, day).column("ts").to_pylist()
            duplicates += len(ts) - len(set(ts))
    takeovers.sort()
    p99 = takeovers[min(len(takeovers) - 1, int(0.99 * len(takeovers)))] if takeovers else float("nan")
    load = os.getloadavg()[0]
    print(
        f"collector shards: {args.markets} markets, {args.shards} shards, {args.seconds:g} s windows, "
        f"load {load:.1f}"
    )
    print(f"  one collector, every market:    {base * 100:.1f} % of a core")
    each = ", ".join(f"{c * 100:.1f} %" for c in per_shard)
    print(f"  {args.shards} shards, each:               {each} of a core")
    print(f"  busiest shard vs one collector: {max(per_shard) / base:.2f}x (headroom per process)")
    print(f"  all shards vs one collector:    {sum(per_shard) / base:.2f}x (cost of sharding)")
    print(f"  takeover after SIGKILL ({len(takeovers)} markets, {len(kills)} kills): median "
          f"{statistics.median(takeovers) if takeovers else float('nan'):.2f} s, p99 {p99:.2f} s, "
          f"max {max(takeovers, default=float('nan')):.2f} s (lease TTL 6 s, renewal every 2 s)")  # fmt: skip
    print(f"  duplicate order-book rows: {duplicates}")
    lapsed = taken = 0
    for log in work.glob("shard-*.log"):
        text = log.read_text(errors="replace")
        lapsed += text.count("its lease lapsed")
        taken += text.count("its lease was taken")
    print(f"  shards that dropped markets for want of a timely renewal: {lapsed} lapsed, {taken} refused")
    print(f"  (work folder {work})")


if __name__ == "__main__":
    main()
