"""Paper trading throughput: fills from the collector's live book vs a REST order book per fill.

    .venv/bin/python bench/bench_paper.py [--orders 600] [--rest-orders 150] [--users 20] [--redis URL]
        [--database-url mysql://root@127.0.0.1:3306/bench_paper] [--baseline-tree DIR]

Starts, on free ports, the Upbit simulator (its own process, Upbit's quotation rate limits on), the collector
(`manage.py collect`, streaming the simulator's KRW-BTC book and publishing it as in production) and two
uvicorn web servers on one SQLite database: one as configured (PAPER_BOOK_MAX_AGE_MS=2000: the live book),
one with PAPER_BOOK_MAX_AGE_MS=0 (a REST /v1/orderbook per fill, the path before issue 13) as the baseline.
20 users with API tokens each send market buys (6,000 KRW) back to back over HTTP, all at once. Prints
orders/s, p50/p99 latency, refused (429) and failed answers, the simulator's order-book requests and 429s,
which book the orders used, and the ledger check (per user: KRW == start - sum of fills and fees, BTC ==
sum of filled volume, the order's fills == the paper ledger). Embedded default (in-memory channel layer,
relay to the web process); with --redis (or REDIS_URL) the same again on Redis (cache, channel layer,
broker): there the web process reads the book the fan-out wrote to the shared cache.
Targets: >= 300 orders/s, p99 <= 50 ms, 0 upstream 429s, 0 ledger differences.

Also printed: the web server's CPU per order (its process group's CPU time over the run / orders placed),
which says what one core could do whatever else the machine runs, and the load average. ``--baseline-tree
DIR`` (an older checkout, e.g. ``git archive <rev> | tar -x -C DIR``) serves the live-book phase with that
code first, on the same port, database and collector, then with this tree: the old path in the same run.
``--web-workers N`` (Redis only: the in-memory channel layer is per process) runs uvicorn with N workers.
In embedded mode the bench process itself (not the web server, no relay) also reads the live book the way a
Celery worker does, from the collector's share file, and prints the time per read.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
START_KRW = Decimal("10000000")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def _users(n: int, tag: str) -> list[tuple[Any, str]]:
    from rest_framework.authtoken.models import Token

    from accounts.models import User

    out = []
    for i in range(n):
        u = User.objects.create_user(username=f"{tag}{i}", email=f"{tag}{i}@example.com", password="x" * 12)
        out.append((u, Token.objects.create(user=u).key))
    return out


def _sim_state(base: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base}/_sim/state", timeout=10).json()


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of one process group (a server and
    its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ..., utime at 11, stime 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _run_load(url: str, users: list[tuple[Any, str]], orders: int, pgid: int) -> dict[str, Any]:
    """Every user sends its share of market buys back to back over one keep-alive connection (the standard
    library's client: a light client leaves the 2 cores to the server); all users at once."""
    host, port = url.rsplit("/", 1)[1].split(":")
    per_user = max(1, orders // len(users))
    latencies: list[float] = []
    codes: dict[int, int] = {}
    sources: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(len(users) + 1)

    body = json.dumps({"market": "KRW-BTC", "amount_krw": "6000"}).encode()

    def worker(token: str) -> None:
        mine: list[float] = []
        my_codes: dict[int, int] = {}
        my_sources: dict[str, int] = {}
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        barrier.wait()
        for _ in range(per_user):
            t0 = time.perf_counter()
            conn.request(
                "POST",
                "/api/trading/orders/buy/",
                body=body,
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            r = conn.getresponse()
            data = r.read()
            mine.append((time.perf_counter() - t0) * 1000)
            my_codes[r.status] = my_codes.get(r.status, 0) + 1
            if r.status == 201:
                src = json.loads(data)["order"].get("book_source") or "?"
                my_sources[src] = my_sources.get(src, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in my_codes.items():
                codes[k] = codes.get(k, 0) + v
            for k, v in my_sources.items():
                sources[k] = sources.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(tok,)) for _u, tok in users]
    for t in threads:
        t.start()
    cpu0 = group_cpu_s(pgid)
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = group_cpu_s(pgid) - cpu0
    ok = codes.get(201, 0)
    return {
        "cpu_ms": cpu * 1000 / max(ok, 1),
        "orders": sum(codes.values()),
        "ok": ok,
        "per_s": ok / wall,
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 99),
        "codes": codes,
        "sources": sources,
    }


def _ledger_differences(users: list[tuple[Any, str]]) -> int:
    from trading.models import Fill, PaperBalance, PaperTrade

    bad = 0
    for user, _tok in users:
        trades = list(PaperTrade.objects.filter(order__user=user).select_related("order"))
        spent = sum((t.funds + t.fee for t in trades if t.order.side == "bid"), Decimal(0))
        got = sum((t.funds - t.fee for t in trades if t.order.side == "ask"), Decimal(0))
        coins = sum((t.volume if t.order.side == "bid" else -t.volume for t in trades), Decimal(0))
        bal = {b.currency: b for b in PaperBalance.objects.filter(user=user)}
        krw = bal["KRW"].balance + bal["KRW"].locked if "KRW" in bal else START_KRW
        btc = bal["BTC"].balance + bal["BTC"].locked if "BTC" in bal else Decimal(0)
        fills = sorted((f.price, f.volume, f.funds, f.fee) for f in Fill.objects.filter(order__user=user))
        ledger = sorted((t.price, t.volume, t.funds, t.fee) for t in trades)
        bad += int(krw != START_KRW - spent + got) + int(btc != coins) + int(fills != ledger)
    return bad


def _wait_live(url: str, token: str, timeout: float = 120.0) -> str:
    """Place buys until one is priced on the live book (the collector's stream has reached the web)."""
    import httpx

    deadline = time.monotonic() + timeout
    src = "?"
    while time.monotonic() < deadline:
        r = httpx.post(
            f"{url}/api/trading/orders/buy/",
            json={"market": "KRW-BTC", "amount_krw": "6000"},
            headers={"Authorization": f"Token {token}", "Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
        )
        if r.status_code == 201:
            src = r.json()["order"]["book_source"]
            if src == "live":
                return src
        time.sleep(0.5)
    return src


def _share_read_us(market: str, n: int = 2000) -> tuple[str, float]:
    """How a process that never saw the stream (a Celery worker) reads the live book in embedded mode: from
    the collector's share file. Returns where the book came from and microseconds per read."""
    from market.livebook import livebook_clear, livebook_get

    livebook_clear(shared=False)  # this process keeps none in memory anyway
    book = livebook_get(market=market, max_age_ms=2000)
    t0 = time.perf_counter()
    for _ in range(n):
        livebook_get(market=market, max_age_ms=2000)
    return (book.where if book else "none (stale or missing)"), (time.perf_counter() - t0) * 1e6 / n


def run_backend(name: str, redis_url: str, tmp: Path, args: argparse.Namespace, env0: dict[str, str]) -> None:
    from tests.live import asgi_server_args, free_port, running, wait_for_http, wait_for_port

    sim_port, live_port, rest_port = free_port(), free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = dict(env0)
    env.update(
        UPBIT_REST_URL=sim_url,
        UPBIT_WS_URL=f"ws://127.0.0.1:{sim_port}/websocket/v1",
        REALTIME_RELAY_URL=f"http://127.0.0.1:{live_port}/internal/realtime/",
        MARKET_DATA_DIR=str(tmp / f"data-{name}"),
        MARKET_CODES="KRW-BTC",
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    workers = args.web_workers if redis_url else 1
    logs = tmp / f"logs-{name}"
    logs.mkdir(exist_ok=True)
    sim_args = [
        PYTHON,
        "manage.py",
        "upbit_sim",
        "--port",
        str(sim_port),
        "--markets",
        "KRW-BTC",
        "--seed",
        "7",
    ]
    collect = [PYTHON, "manage.py", "collect", "--markets", "KRW-BTC", "--no-predictions"]
    # As the launcher serves it (core/launcher.py): no access log, no per-frame compression.
    web_extra = ["--no-access-log", "--ws-per-message-deflate", "false"]
    if workers > 1:
        web_extra += ["--workers", str(workers)]
    live_env = {**env, "PAPER_BOOK_MAX_AGE_MS": "2000", "OBSERVATOR_ROLE": "web"}
    results: list[tuple[str, dict[str, Any], tuple[int, int], int]] = []
    share = ("", 0.0)
    load0 = os.getloadavg()
    with contextlib.ExitStack() as stack:
        stack.enter_context(running(sim_args, env=env, log_path=logs / "sim.log"))
        wait_for_port(sim_port, timeout=120)
        rest_env = {**env, "PAPER_BOOK_MAX_AGE_MS": "0", "OBSERVATOR_ROLE": "web"}
        rest_proc = stack.enter_context(
            running(asgi_server_args(rest_port) + web_extra, env=rest_env, log_path=logs / "web-rest.log")
        )
        coll_env = {**env, "OBSERVATOR_ROLE": "collector"}
        stack.enter_context(running(collect, env=coll_env, log_path=logs / "collector.log"))
        rest_url, live_url = f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{live_port}"
        wait_for_http(f"{rest_url}/healthz", timeout=180)

        # Baseline: a REST order book per fill, as before issue 13 (Upbit's quotation limit applies to it).
        if args.rest_orders:
            users = _users(args.users, f"r{name}")
            before = _sim_state(sim_url)
            r = _run_load(rest_url, users, args.rest_orders, rest_proc.pid)
            results.append(("REST book per fill", r, _upstream(before, _sim_state(sim_url)), _ledger(users)))
        phases = [("live book, baseline tree", Path(args.baseline_tree))] if args.baseline_tree else []
        phases.append(("live book", ROOT))
        # Each phase serves the same port in turn, so the collector's relay (embedded mode) reaches it.
        for i, (label, tree) in enumerate(phases):
            with running(
                asgi_server_args(live_port) + web_extra,
                env=live_env,
                log_path=logs / f"web-live-{i}.log",
                cwd=tree,
            ) as proc:
                wait_for_http(f"{live_url}/healthz", timeout=180)
                users = _users(args.users, f"l{i}{name}")
                first = _wait_live(live_url, users[0][1])
                if first != "live":
                    print(f"   {label}: the live book never reached the web server ({first!r}); see {logs}")
                before = _sim_state(sim_url)
                r = _run_load(live_url, users, args.orders, proc.pid)
                results.append((label, r, _upstream(before, _sim_state(sim_url)), _ledger(users)))
        if not redis_url:
            share = _share_read_us("KRW-BTC")
    load1 = os.getloadavg()

    db = "MariaDB" if os.environ["DATABASE_URL"].startswith("mysql") else "SQLite"
    backend = f"Redis, {db}" if redis_url else f"embedded: in-memory layer + relay, {db}"
    print(f"\n== {name} ({backend}; web: uvicorn, {workers} worker{'s' if workers > 1 else ''}) ==")
    cpus = os.cpu_count()
    print(f"load average (1 min) {load0[0]:.1f} at the start, {load1[0]:.1f} at the end, on {cpus} CPUs")
    for label, r, up, bad in results:
        print(
            f"{label:<25} {r['ok']:>5}/{r['orders']:<5} placed  {r['per_s']:7.1f} orders/s  "
            f"p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  web CPU {r['cpu_ms']:5.2f} ms/order  "
            f"answers {r['codes']}  books {r['sources']}  upstream /v1/orderbook {up[0]} (429: {up[1]})  "
            f"ledger differences {bad}"
        )
    now = results[-1][1]
    for label, r, _up, _bad in results[:-1]:
        print(
            f"ratio live book (this tree) / {label}: {now['per_s'] / max(r['per_s'], 1e-9):.1f}x orders/s, "
            f"p99 {r['p99'] / max(now['p99'], 1e-9):.1f}x lower, "
            f"CPU per order {r['cpu_ms'] / max(now['cpu_ms'], 1e-9):.1f}x less"
        )
    print(
        f"one web process at {now['cpu_ms']:.2f} ms CPU per order: at most "
        f"{1000 / max(now['cpu_ms'], 1e-9):.0f} orders/s on a core of its own"
    )
    if share[0]:
        print(f"a worker process reads the live book from: {share[0]}, {share[1]:.0f} us per read")


def _upstream(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, int]:
    req = b["requests"].get("orderbook", 0) - a["requests"].get("orderbook", 0)
    return req, b["refused"].get("orderbook", 0) - a["refused"].get("orderbook", 0)


def _ledger(users: list[tuple[Any, str]]) -> int:
    return _ledger_differences(users)


def _mysql_fresh(url: str) -> None:
    """Drop and create the bench's MariaDB/MySQL database (only the one the URL names)."""
    from urllib.parse import urlsplit

    import MySQLdb

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        passwd=parts.password or "",
    )
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--rest-orders", type=int, default=150, help="REST baseline orders (slow; 0: none)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", ""), help="also run on this Redis")
    parser.add_argument("--only-redis", action="store_true")
    parser.add_argument("--baseline-tree", default="", help="an older checkout to serve the live phase first")
    parser.add_argument("--web-workers", type=int, default=1, help="uvicorn --workers (Redis only)")
    parser.add_argument(
        "--database-url",
        default="",
        help="e.g. mysql://root@127.0.0.1:3306/bench_paper (that database is dropped and created first); "
        "default: a new SQLite file",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-paper-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "observator.settings.test"
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    if args.database_url.startswith("mysql://"):
        _mysql_fresh(args.database_url)
    os.environ["OBSERVATOR_VAR_DIR"] = str(tmp)
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    env0 = dict(os.environ)
    env0["SECRET_KEY"] = settings.SECRET_KEY
    env0["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    env0["PAPER_STARTING_KRW"] = str(START_KRW)
    env0["PYTHONUNBUFFERED"] = "1"
    print(f"{args.users} users, market buys of 6,000 KRW; temporary files in {tmp}")
    if not args.only_redis:
        run_backend("embedded", "", tmp, args, env0)
    if args.redis:
        import redis

        redis_url = args.redis.rsplit("/", 1)[0] + "/13"  # a database of its own, emptied first
        redis.Redis.from_url(redis_url).flushdb()
        run_backend("redis", redis_url, tmp, args, env0)


if __name__ == "__main__":
    main()
