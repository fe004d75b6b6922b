"""Sharded collectors (issue 16): three real ``manage.py collect`` processes split the simulator's markets
through Redis leases; one is killed with SIGKILL; its markets are taken over by the others, every market is
still collected by exactly one process (no duplicate rows), and the hole is on record as gap rows."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from market import dayfiles
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests import live

CODES = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-ADA", "KRW-SOL", "KRW-DOGE"]
FLUSH_S = 1.0
REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not REDIS_URL.startswith("redis"), reason="sharding needs REDIS_URL"),
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    cfg = SimConfig(markets=CODES, seed=11, tick_ms=50, rate_limits={"websocket-connect": 1000})
    with SimulatorThread(cfg) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


@pytest.fixture
def namespace() -> Iterator[str]:
    import redis

    ns = f"test:shards:{secrets.token_hex(4)}"
    yield ns
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{ns}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def start_collector(sim: SimulatorThread, data_dir: Path, log: Path, ns: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "observator.settings.test", "OBSERVATOR_ROLE": "collector",
           "PYTHONUNBUFFERED": "1", "MARKET_PREDICTION_FEED": "false", "LOG_LEVEL": "INFO"}  # fmt: skip
    args = [live.PYTHON, "manage.py", "collect", "--markets", ",".join(CODES), "--ws-url", sim.ws_url,
            "--data-dir", str(data_dir), "--flush-interval", str(FLUSH_S), "--no-fanout", "--no-predictions",
            "--leases", "on", "--redis-url", REDIS_URL, "--lease-namespace", ns]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=live.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def holders(ns: str) -> dict[str, int]:
    """market -> pid of the collector holding its lease (member ids are host:pid:random)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        values = client.mget([f"{ns}:lease:{m}" for m in CODES])
    finally:
        client.close()
    return {m: int(v.decode().split(":")[1]) for m, v in zip(CODES, values, strict=True) if v}


def rows(data_dir: Path, kind: str, market: str) -> list[dict]:
    out: list[dict] = []
    for day in dayfiles.list_days(data_dir, kind, market):
        out += dayfiles.read_day(data_dir, kind, market, day).to_pylist()
    return out


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


def test_three_collectors_one_killed_every_market_collected_exactly_once(
    sim: SimulatorThread, namespace: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    procs = [start_collector(sim, data_dir, tmp_path / f"collector-{i}.log", namespace) for i in range(3)]
    try:
        pids = {p.pid for p in procs}

        def balanced() -> bool:
            held = holders(namespace)
            counts = [list(held.values()).count(pid) for pid in pids]
            return len(held) == len(CODES) and sorted(counts) == [2, 2, 2]

        live.wait_until(
            balanced, timeout=120, interval=0.5, message="three collectors holding two markets each"
        )
        live.wait_until(lambda: all(rows(data_dir, "orderbook", m) for m in CODES), timeout=60, interval=0.5,
                        message="every market on disk")  # fmt: skip
        time.sleep(2 * FLUSH_S)
        victim = procs[0]
        victim_markets = sorted(m for m, pid in holders(namespace).items() if pid == victim.pid)
        kill_ms = int(time.time() * 1000)
        stop(victim, signal.SIGKILL)
        survivors = [p for p in procs if p is not victim]

        def taken_over() -> bool:
            held = holders(namespace)
            return len(held) == len(CODES) and set(held.values()) <= {p.pid for p in survivors}

        live.wait_until(
            taken_over, timeout=60, interval=0.2, message="the dead collector's markets taken over"
        )

        def collected_again() -> bool:
            return all(
                any(r["recv_ts"] > kill_ms for r in rows(data_dir, "orderbook", m)) for m in victim_markets
            )

        live.wait_until(
            collected_again, timeout=60, interval=0.5, message="the taken markets collected again"
        )
        time.sleep(3 * FLUSH_S)
        final = holders(namespace)
        for p in survivors:
            assert stop(p) == 0, (tmp_path / "collector-1.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p, signal.SIGKILL)

    # Each survivor holds three markets at the end, and each market exactly one holder.
    assert sorted(list(final.values()).count(p.pid) for p in survivors) == [3, 3]
    takeovers = {}
    for market in CODES:
        books = rows(data_dir, "orderbook", market)
        trades = rows(data_dir, "trade", market)
        gaps = rows(data_dir, "gap", market)
        # Exactly once: no book (exchange timestamp) and no trade (sequential id) stored twice.
        assert len({b["ts"] for b in books}) == len(books), market
        assert len({t["sequential_id"] for t in trades}) == len(trades), market
        recv = sorted(b["recv_ts"] for b in books)
        # Every hole of more than 3 s in the books is covered by a gap row.
        for before, after in zip(recv, recv[1:], strict=False):
            if after - before > 3000:
                assert any(g["ts_start"] <= before + 1000 and g["ts_end"] >= after - 1000 for g in gaps), (
                    market, before, after, gaps)  # fmt: skip
        if market in victim_markets:
            (gap,) = [g for g in gaps if g["reason"] == "takeover"]
            assert gap["ts_start"] <= kill_ms < gap["ts_end"]
            first_after = min(r for r in recv if r > kill_ms)
            assert gap["ts_end"] == first_after
            takeovers[market] = (first_after - kill_ms) / 1000
        else:
            assert not [g for g in gaps if g["reason"] == "takeover"], (market, gaps)
    print(f"takeover (SIGKILL -> first record by the new holder), s: {takeovers}")
