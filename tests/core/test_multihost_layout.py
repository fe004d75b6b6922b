"""The multi-host layout (docs/ops/multi-host.md), started on this box as separate processes, one
``manage.py serve_role`` command per role: "host A" runs web, a worker, beat and a collector shard; "host B"
a second worker and a second collector shard. They share Redis, the database and the day-file folder (the
shared file system); each "host" has its own var/ folder (heartbeats, metrics)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from market import dayfiles, leases
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests import live

CODES = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-ADA"]
REDIS_DB = 9  # a Redis database of its own (soak 11/12, e2e 13)

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("REDIS_URL", "").startswith("redis"), reason="needs REDIS_URL"),
]


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    cfg = SimConfig(markets=CODES, seed=5, tick_ms=100, rate_limits={"websocket-connect": 1000})
    with SimulatorThread(cfg) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


def _redis_url() -> str:
    import redis

    url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


def role(name: str, *extra: str) -> list[str]:
    return [live.PYTHON, "manage.py", "serve_role", "--role", name, *extra]


@pytest.mark.timeout(900)  # six Django processes start on a shared 2-core box
def test_two_hosts_layout_runs_as_one_command_per_role(
    transactional_db: Any, sim: SimulatorThread, tmp_path: Path
) -> None:
    redis_url = _redis_url()
    web_port = live.free_port()
    common = {
        "REDIS_URL": redis_url,
        "UPBIT_REST_URL": sim.rest_url,
        "UPBIT_WS_URL": sim.ws_url,
        "MARKET_CODES": ",".join(CODES),
        "MARKET_DATA_DIR": str(tmp_path / "shared-data"),  # the file system both hosts mount
        "MARKET_PREDICTION_FEED": "false",
        "LOG_LEVEL": "WARNING",
    }
    hosts = {h: live.child_env({**common, "OBSERVATOR_VAR_DIR": str(tmp_path / f"var-{h}")}) for h in "ab"}
    for env in hosts.values():
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    layout = {
        "web-a": ("a", role("web", "--port", str(web_port))),
        "worker-a": ("a", role("worker", "--port", str(web_port), "--node", "default-a@%h")),
        "beat-a": ("a", role("beat", "--port", str(web_port))),
        "collector-a": ("a", role("collector", "--port", str(web_port))),
        "worker-b": ("b", role("worker", "--node", "default-b@%h")),
        "collector-b": ("b", role("collector")),
    }
    with contextlib.ExitStack() as stack:
        procs = {}
        for name, (h, args) in layout.items():
            started = live.running(args, env=hosts[h], log_path=logs / f"{name}.log", stop_timeout=30)
            procs[name] = stack.enter_context(started)

        def tail(name: str) -> str:
            return (logs / f"{name}.log").read_text(errors="replace")[-2000:]

        live.wait_for_http(f"http://127.0.0.1:{web_port}/healthz", timeout=90, proc=procs["web-a"])
        assert httpx.get(f"http://127.0.0.1:{web_port}/readyz", timeout=10).status_code == 200

        # Both collector shards hold half of the markets each, and every market reaches the shared files.
        import redis

        client = redis.Redis.from_url(redis_url)
        ns = leases.namespace_for(sim.ws_url)

        def shards() -> dict[str, int]:
            values = client.mget([f"{ns}:lease:{m}" for m in CODES])
            return {m: int(v.decode().split(":")[1]) for m, v in zip(CODES, values, strict=True) if v}

        collector_pids = {procs["collector-a"].pid, procs["collector-b"].pid}
        live.wait_until(
            lambda: sorted(list(shards().values()).count(p) for p in collector_pids) == [2, 2],
            timeout=120, interval=0.5, message="two collector shards with two markets each: "
            + tail("collector-a") + tail("collector-b"),
        )  # fmt: skip
        data = tmp_path / "shared-data"
        live.wait_until(
            lambda: all(dayfiles.list_days(data, "orderbook", m) for m in CODES), timeout=60, interval=0.5,
            message="day files of every market",
        )  # fmt: skip
        client.close()

        # Each role answers its host's health probe (one command per role, as an orchestrator runs it). One
        # at a time: each is a Django start-up, slow on a loaded 2-core box.
        def healthy(host: str, name: str) -> bool:
            result = subprocess.run(
                [live.PYTHON, "manage.py", "health", "--role", name], cwd=live.ROOT, env=hosts[host],
                capture_output=True, timeout=300,
            )  # fmt: skip
            return result.returncode == 0

        for host, name in (
            ("a", "worker"),
            ("a", "beat"),
            ("a", "collector"),
            ("b", "worker"),
            ("b", "collector"),
        ):
            live.wait_until(
                lambda h=host, n=name: healthy(h, n), timeout=300, interval=2, message=f"{name} on {host}"
            )

        # Both workers consume the shared queue: each answers a ping by name.
        # A Celery app of its own on the layout's Redis database: the project's app in this process keeps
        # its broker (repointing it left later tests pinging database 9, and an app that had connected
        # before kept pinging its old database through its pool).
        from celery import Celery

        app = Celery("multihost-probe", broker=redis_url, backend=redis_url, set_as_current=False)
        try:
            live.wait_until(
                lambda: {"default-a", "default-b"}
                <= {next(iter(r)).split("@")[0] for r in app.control.ping(timeout=2.0) or []},
                timeout=90, interval=1, message="both workers answer",
            )  # fmt: skip
        finally:
            app.close()

        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {tail(name)}"
        # A clean stop of the collectors: each releases its leases, exits 0.
        for name in ("collector-a", "collector-b"):
            procs[name].terminate()
            assert procs[name].wait(timeout=30) == 0, tail(name)
