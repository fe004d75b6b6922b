"""Tick-to-browser latency of the live market fan-out, p50/p99 with 100 and 500 WebSocket clients.

    .venv/bin/python bench/bench_fanout.py [--clients 100,500] [--rate 10] [--seconds 8] [--redis URL]

The real path: this process plays the collector (``OBSERVATOR_ROLE=collector``) and feeds order books at a
steady rate into :class:`market.fanout.MarketFanout`, which publishes through ``core.realtime`` (the relay
of the web process in embedded mode, or Redis with ``--redis``) to the real ASGI server (uvicorn
subprocess, the project's ASGI application); client subprocesses hold N real WebSocket connections
(``websockets``) on ``/ws/market/KRW-BTC/`` and measure receive time minus the book's timestamp (stamped
when the update was produced). Updates of the first 250 ms are not counted (connection warm-up).

Baseline in the same run, same server, same publisher: a naive consumer at ``/ws/naive/KRW-BTC/`` that joins
the Channels group itself (one channel-layer delivery per connection) and sends every event as it arrives.
Prints p50/p99/max latency, delivery (frames received / frames published per client; the hub may skip an
intermediate book by design, latest wins), server CPU per scenario, and the naive/hub ratios.
Target: p99 <= 50 ms at 500 clients. Bounded: under a minute with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKET = "KRW-BTC"


# --------------------------------------------------------------------------------------------------------
# Server side (run inside uvicorn via --factory): the project's ASGI app plus the naive baseline route
# --------------------------------------------------------------------------------------------------------


def make_app() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")
    if os.environ.get("BENCH_PROFILE"):  # development aid: profile the server's event loop thread
        import atexit
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        atexit.register(lambda: (profiler.disable(), profiler.dump_stats(os.environ["BENCH_PROFILE"])))
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()
    from channels.auth import AuthMiddlewareStack
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator
    from django.urls import re_path

    from observator.routing import websocket_urlpatterns

    class NaiveMarketConsumer(AsyncWebsocketConsumer):
        """Baseline: per-connection group membership, every event sent at once, no coalescing/throttling."""

        async def connect(self) -> None:
            self.market = self.scope["url_route"]["kwargs"]["code"]
            await self.channel_layer.group_add(f"market.{self.market}", self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(f"market.{self.market}", self.channel_name)

        async def _forward(self, event: dict[str, Any]) -> None:
            kind = event["type"].split(".", 1)[1]
            await self.send(
                text_data=json.dumps({"type": kind, "market": self.market, "data": event["data"]})
            )

        market_orderbook = market_trade = market_ticker = market_prediction = _forward

    routes = [
        re_path(r"^ws/naive/(?P<code>[A-Z0-9-]+)/$", NaiveMarketConsumer.as_asgi()),
        *websocket_urlpatterns,
    ]
    if os.environ.get("BENCH_RELAY_FASTPATH", "1") == "1":
        from core.relay_asgi import RealtimeRelayFastPath

        django_app = RealtimeRelayFastPath(django_app)
    return ProtocolTypeRouter(
        {
            "http": django_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(routes))),
        }
    )


# --------------------------------------------------------------------------------------------------------
# Client side (a subprocess): N sockets, latency samples
# --------------------------------------------------------------------------------------------------------


async def _clients(url: str, origin: str, n: int, seconds: float) -> dict[str, Any]:
    import websockets

    try:
        import orjson

        loads = orjson.loads
    except ImportError:  # pragma: no cover
        loads = json.loads

    latencies: list[tuple[int, float]] = []
    received = 0
    connected = 0
    all_connected = asyncio.Event()

    sockets: list[Any] = []

    async def one() -> None:
        nonlocal received, connected
        async with websockets.connect(
            url, origin=origin, open_timeout=60, max_size=None, ping_interval=None, compression=None
        ) as ws:
            sockets.append(ws)
            connected += 1
            if connected == n:
                all_connected.set()
            # Plain iteration (no per-message timeout task): the client must stay cheaper than the server.
            async for msg in ws:
                now_ms = time.time() * 1000.0
                frame = loads(msg)
                if frame.get("type") == "orderbook":
                    received += 1
                    ts = frame["data"]["ts"]
                    latencies.append((ts, now_ms - ts))

    tasks = []
    for _ in range(n):  # connect in small waves so the accept queue never overflows
        tasks.append(asyncio.create_task(one()))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(all_connected.wait(), timeout=60)
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "GO": every client process starts measuring together
    await asyncio.sleep(seconds)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "latencies": latencies,
        "received": received,
        "errors": errors[:3],
        "error_count": len(errors),
        "cpu_s": time.process_time(),
    }


def client_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    out = asyncio.run(_clients(args.url, args.origin, args.n, args.seconds))
    # A file, not stdout: results are large and the event loop may leave stdout non-blocking.
    Path(args.out).write_text(json.dumps(out))
    print("DONE", flush=True)


# --------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, timeout: float = 15.0) -> None:
    """Wait until the server is idle (< 5 % CPU over 0.5 s): a backlogged previous scenario (the naive one
    keeps sending to sockets already closed) must not slow down the next one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < 0.025:
            return


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _publish(rate: float, seconds: float, publish_ms: list[float]) -> int:
    from core.realtime import apublish_many
    from market.fanout import MarketFanout

    async def timed_publish(messages: list[tuple[str, dict[str, Any]]]) -> None:
        t0 = time.perf_counter()
        await apublish_many(messages)
        publish_ms.append((time.perf_counter() - t0) * 1000.0)

    sent = 0
    period = 1.0 / rate
    async with MarketFanout(publisher=timed_publish) as fanout:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            now_ms = int(time.time() * 1000)
            bid = 100_000_000 + (sent % 50) * 1000
            fanout.orderbook(
                {
                    "type": "orderbook",
                    "code": MARKET,
                    "timestamp": now_ms,
                    "total_ask_size": 30.0,
                    "total_bid_size": 30.0,
                    "orderbook_units": [
                        {
                            "ask_price": bid + 1000 * (i + 1),
                            "bid_price": bid - 1000 * i,
                            "ask_size": 1.0,
                            "bid_size": 1.0,
                        }
                        for i in range(15)
                    ],
                }
            )
            sent += 1
            next_at = start + sent * period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def run_scenario(
    base: str, server_pid: int, path: str, n: int, rate: float, seconds: float, procs: int
) -> dict[str, Any]:
    url = base.replace("http://", "ws://") + path
    sizes = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    out_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-clients-"))
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                "--url",
                url,
                "--origin",
                base,
                "--n",
                str(size),
                "--seconds",
                str(seconds),
                "--out",
                str(out_dir / f"client-{i}.json"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for i, size in enumerate(sizes)
        if size
    ]
    import threading

    lines: list[list[str]] = [[] for _ in clients]
    ready = [threading.Event() for _ in clients]

    def pump(i: int, client: subprocess.Popen[str]) -> None:
        # One reader per pipe from the start: a full pipe never blocks a client, nothing is read twice.
        assert client.stdout is not None
        for line in client.stdout:
            lines[i].append(line)
            if line.startswith("READY"):
                ready[i].set()
        ready[i].set()

    pumps = [threading.Thread(target=pump, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for t in pumps:
        t.start()
    try:
        for i, client in enumerate(clients):
            if not ready[i].wait(90) or not any(ln.startswith("READY") for ln in lines[i]):
                raise RuntimeError(f"clients failed: {client.stderr.read() if client.stderr else ''}")
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("GO\n")
            client.stdin.flush()
        start_ms = time.time() * 1000.0
        cpu0 = _cpu_seconds(server_pid)
        publish_ms: list[float] = []
        sent = asyncio.run(_publish(rate, seconds - 0.5, publish_ms))
        cpu1 = _cpu_seconds(server_pid)
        for client, t in zip(clients, pumps, strict=True):
            client.wait(timeout=seconds + 30)
            t.join(timeout=10)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=5)
    results = []
    for i, client in enumerate(clients):
        path_i = out_dir / f"client-{i}.json"
        if not path_i.exists():
            raise RuntimeError(
                f"clients gave no result: {client.stderr.read()[-2000:] if client.stderr else ''}"
            )
        results.append(json.loads(path_i.read_text()))
    shutil.rmtree(out_dir, ignore_errors=True)
    # The first 250 ms of updates include connection warm-up (first sends on each socket): not counted.
    warm = [lat for r in results for ts, lat in r["latencies"] if ts >= start_ms + 250]
    received = sum(r["received"] for r in results)
    data = {
        "received": received,
        "cpu_s": sum(r["cpu_s"] for r in results),
        "error_count": sum(r["error_count"] for r in results),
    }
    return {
        "path": path,
        "clients": n,
        "sent": sent,
        "received": data["received"],
        "delivery": data["received"] / max(1, sent * n),
        "p50": statistics.median(warm) if warm else float("nan"),
        "p99": _pct(warm, 0.99),
        "max": max(warm) if warm else float("nan"),
        "publish_p50": statistics.median(publish_ms),
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": data["cpu_s"],
        "errors": data["error_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--clients", default="100,500", help="comma-separated client counts")
    parser.add_argument("--rate", type=float, default=10.0, help="order-book updates per second (Upbit: ~10)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement time per scenario")
    parser.add_argument("--client-procs", type=int, default=2, help="processes sharing the client sockets")
    parser.add_argument("--ws", default="websockets", help="uvicorn WebSocket implementation")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="keep uvicorn's permessage-deflate on (default off: it costs CPU per frame per socket)",
    )
    parser.add_argument(
        "--redis", default="", help="use Redis (channel layer) at this URL instead of the relay"
    )
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "observator.settings.test",
            "SECRET_KEY": env.get("SECRET_KEY", "bench-fanout-secret-" + "x" * 40),
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "REDIS_URL": args.redis,
            "REALTIME_RELAY_URL": f"{base}/internal/realtime/",
            # Nothing listens there: snapshots come from the stream.
            "UPBIT_REST_URL": f"http://127.0.0.1:{_free_port()}",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    server_env = {**env, "OBSERVATOR_ROLE": "web"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bench_fanout:make_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            args.ws,
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            *([] if args.deflate else ["--ws-per-message-deflate", "false"]),
        ],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "wb"),  # noqa: SIM115
    )
    os.environ.update({**env, "OBSERVATOR_ROLE": "collector"})
    import django

    django.setup()
    import httpx

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1.0)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)

        mode = "redis" if args.redis else "embedded relay"
        print(
            f"tick-to-browser latency, {args.rate:g} books/s on {MARKET}, {args.seconds:g} s per scenario, "
            f"publisher -> {mode} -> uvicorn ({args.ws}, deflate {'on' if args.deflate else 'off'}) -> "
            f"N websockets in {args.client_procs} client processes; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at start (other work on the box inflates latencies)"
        )
        print(
            f"{'scenario':<28}{'clients':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'delivered':>11}"
            f"{'server cpu s':>14}"
        )
        results: dict[tuple[str, int], dict[str, Any]] = {}
        # The hub scenarios first: the naive consumer leaves up to 100 deep-copied events queued per closed
        # channel in the in-memory layer (until they expire), and that heap slows whatever runs next.
        for name, path in (
            ("hub (market.consumers)", f"/ws/market/{MARKET}/"),
            ("naive group_send baseline", f"/ws/naive/{MARKET}/"),
        ):
            for n in [int(x) for x in args.clients.split(",")]:
                _settle(server.pid)
                r = run_scenario(base, server.pid, path, n, args.rate, args.seconds, args.client_procs)
                results[(name, n)] = r
                print(
                    f"{name:<28}{n:>8}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}"
                    f"{r['delivery']:>10.1%}{r['server_cpu_s']:>14.2f}"
                    + f"  (publish p50 {r['publish_p50']:.1f} ms, client cpu {r['client_cpu_s']:.2f} s)"
                    + (f"  errors={r['errors']}" if r["errors"] else "")
                )
        print()
        for n in [int(x) for x in args.clients.split(",")]:
            hub, naive = results[("hub (market.consumers)", n)], results[("naive group_send baseline", n)]
            print(
                f"{n} clients: p99 naive/hub = {naive['p99'] / hub['p99']:.2f}x, "
                f"p50 naive/hub = {naive['p50'] / hub['p50']:.2f}x, "
                f"server CPU naive/hub = {naive['server_cpu_s'] / max(hub['server_cpu_s'], 1e-9):.2f}x; "
                f"target p99 <= 50 ms: {'met' if hub['p99'] <= 50 else 'NOT met'} ({hub['p99']:.1f} ms)"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
