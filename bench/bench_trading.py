"""Trading benchmark: order API -> exchange ack on the Upbit simulator, and scheduled-order firing delay.

    .venv/bin/python bench/bench_trading.py [--orders 200] [--scheduled 20]

1. ``POST /api/trading/orders/limit/`` (live mode: the whole Django + DRF stack, validation, balance check
   against the cached live balances, the pending row, the JWT-signed POST /v1/orders, the row update)
   until the answer, p50/p99, against the baseline of the same order sent with the raw ``UpbitClient``
   (no API layer). Target: p99 <= 20 ms.
2. Scheduled orders due at spread-out times, fired by the beat task running every 1 s (as celery beat
   schedules it); delay = fired_at - due time, median/p99/max. Target: <= 1 s. Baseline: placing the same
   order directly.

Runs on a throw-away SQLite database and an in-process simulator; prints figures and ratios (medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def fmt(name: str, values: list[float], unit: str = "ms") -> str:
    return (
        f"{name:<44} n={len(values):<4} p50={statistics.median(values):8.2f} {unit}  "
        f"p99={pct(values, 99):8.2f} {unit}  max={max(values):8.2f} {unit}"
    )


class _ProcessSimulator:
    """``manage.py upbit_sim`` in a subprocess, with the two methods the benchmark uses."""

    def __init__(self) -> None:
        import subprocess

        import httpx

        from tests.live import free_port, wait_for_port

        port = free_port()
        self.rest_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "upbit_sim",
                "--port",
                str(port),
                "--markets",
                "KRW-BTC",
                "--seed",
                "7",
                "--no-rate-limits",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, timeout=60, proc=self.proc)
        self._http = httpx.Client(base_url=self.rest_url, timeout=10)

    def create_account(self, *, krw: str, access_key: str, secret_key: str) -> dict[str, str]:
        body = {"krw": krw, "access_key": access_key, "secret_key": secret_key}
        response = self._http.post("/_sim/accounts", json=body)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--scheduled", type=int, default=20)
    parser.add_argument("--in-process-sim", action="store_true", help="run the simulator in a thread")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-trading-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "observator.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["OBSERVATOR_TEST_RUN"] = f"bench{os.getpid()}"
    import django

    django.setup()
    import logging

    logging.disable(logging.INFO)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from rest_framework.test import APIClient

    from accounts.models import User
    from accounts.services import exchange_credential_save
    from market.upbit.client import UpbitClient
    from market.upbit.protocol import round_to_tick
    from market.upbit_sim.server import SimConfig, SimulatorThread
    from trading.models import ScheduledOrder, TradingProfile
    from trading.services import order_place, scheduled_order_create
    from trading.tasks import fire_due_scheduled_orders

    # The simulator runs in its own process, as Upbit is remote in production: in a thread it would share
    # this process's GIL with the request being measured.
    sim = _ProcessSimulator() if not args.in_process_sim else None
    if sim is None:
        sim = SimulatorThread(SimConfig(markets=["KRW-BTC"], rate_limits={}, seed=7)).start()
    settings.UPBIT_REST_URL = sim.rest_url
    settings.TRADING_PRECISE_SCHEDULE = False
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
        "user": "1000000/min",
        "anon": "1000000/min",
        "orders": "1000000/min",
    }
    settings.ALLOWED_HOSTS = ["*"]
    try:
        key = lambda n: ("K" * 20 + f"{n:020d}")[:40]  # noqa: E731 - Upbit-format keys
        acct_api = sim.create_account(krw="100000000000", access_key=key(1), secret_key=key(2))
        acct_raw = sim.create_account(krw="100000000000", access_key=key(3), secret_key=key(4))
        user = User.objects.create_user(username="bench01", email="bench@example.com", password="x" * 12)
        exchange_credential_save(
            user=user, access_key=acct_api["access_key"], secret_key=acct_api["secret_key"]
        )
        TradingProfile.objects.create(user=user, mode="live")
        raw = UpbitClient(
            base_url=sim.rest_url, access_key=acct_raw["access_key"], secret_key=acct_raw["secret_key"]
        )
        time.sleep(0.5)
        bid = Decimal(str(raw.tickers(["KRW-BTC"])[0]["trade_price"]))
        price = round_to_tick(bid * Decimal("0.7"))  # rests: the ack is the exchange accepting it
        volume = (Decimal(6000) / price).quantize(Decimal("0.00000001")) + Decimal("0.00000001")

        api = APIClient()
        api.force_authenticate(user)
        payload = {"market": "KRW-BTC", "side": "bid", "price": str(price), "volume": str(volume)}
        for i in range(10):  # warm-up: caches, connection pools, first-query costs
            api.post("/api/trading/orders/limit/", payload, format="json", HTTP_IDEMPOTENCY_KEY=f"warm-{i}")
            raw.place_order(
                market="KRW-BTC",
                side="bid",
                ord_type="limit",
                price=price,
                volume=volume,
                identifier=f"warm-{i}",
            )
        api_ms, raw_ms = [], []
        for i in range(args.orders):
            t0 = time.perf_counter()
            r = api.post(
                "/api/trading/orders/limit/", payload, format="json", HTTP_IDEMPOTENCY_KEY=f"bench-{i}"
            )
            api_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201, r.content
            t0 = time.perf_counter()
            raw.place_order(
                market="KRW-BTC",
                side="bid",
                ord_type="limit",
                price=price,
                volume=volume,
                identifier=f"bench-{i}",
            )
            raw_ms.append((time.perf_counter() - t0) * 1000)

        print("== Order API -> exchange ack (simulator, live mode) ==")
        print(fmt("API POST /api/trading/orders/limit/", api_ms))
        print(fmt("baseline: raw UpbitClient.place_order", raw_ms))
        print(
            f"ratio API/raw: p50 {statistics.median(api_ms) / statistics.median(raw_ms):.2f}x  "
            f"p99 {pct(api_ms, 99) / pct(raw_ms, 99):.2f}x   target p99 <= 20 ms: "
            f"{'met' if pct(api_ms, 99) <= 20 else 'NOT met'}"
        )

        # -- scheduled orders ----------------------------------------------------------------------------
        from django.utils import timezone

        suser = User.objects.create_user(username="bench02", email="b2@example.com", password="x" * 12)
        TradingProfile.objects.create(user=suser, mode="paper")
        place_ms = []
        for i in range(5):
            t0 = time.perf_counter()
            order_place(
                user=suser,
                market="KRW-BTC",
                side="bid",
                ord_type="price",
                price=Decimal(6000),
                idempotency_key=f"direct-{i}",
            )
            place_ms.append((time.perf_counter() - t0) * 1000)
        start = timezone.now()
        sos = []
        for i in range(args.scheduled):
            due = start + timezone.timedelta(seconds=1.5 + i * 0.37)  # spread over the beat's phase
            sos.append(
                scheduled_order_create(
                    user=suser,
                    market="KRW-BTC",
                    side="bid",
                    ord_type="price",
                    price=Decimal(6000),
                    trigger_type="time",
                    trigger_at=due,
                )
            )
        stop = threading.Event()

        def beat() -> None:  # what celery beat does with {"schedule": 1.0}
            from django.db import connection

            next_at = time.monotonic()
            while not stop.is_set():
                fire_due_scheduled_orders()
                next_at += 1.0
                stop.wait(max(0.0, next_at - time.monotonic()))
            connection.close()

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        deadline = time.monotonic() + 3 + args.scheduled * 0.37 + 3
        while time.monotonic() < deadline:
            if ScheduledOrder.objects.filter(pk__in=[s.pk for s in sos], fired_at__isnull=True).count() == 0:
                break
            time.sleep(0.2)
        stop.set()
        t.join(5)
        delays, acks = [], []
        for s in ScheduledOrder.objects.filter(pk__in=[s.pk for s in sos]).select_related("order"):
            if s.fired_at is not None:
                delays.append((s.fired_at - s.trigger_at).total_seconds() * 1000)
            if s.order is not None and s.order.submitted_at is not None:
                acks.append((s.order.submitted_at - s.trigger_at).total_seconds() * 1000)
        states = sorted(
            set(ScheduledOrder.objects.filter(pk__in=[s.pk for s in sos]).values_list("state", flat=True))
        )
        print("== Scheduled-order firing delay after due time (beat every 1 s) ==")
        print(f"fired {len(delays)}/{len(sos)} states={states}")
        if delays:
            print(fmt("fired_at - due", delays))
            print(fmt("exchange ack of its order - due", acks))
            print(fmt("baseline: order_place directly (paper)", place_ms))
            ratio = statistics.median(acks) / statistics.median(place_ms)
            print(
                f"ratio (due -> ack) / (direct placement): p50 {ratio:.2f}x   "
                f"target <= 1000 ms: {'met' if max(acks) <= 1000 else 'NOT met'} (max {max(acks):.0f} ms)"
            )
        if os.environ.get("REDIS_URL"):
            precise_path(sim.rest_url, suser, args.scheduled)
        else:
            print("(set REDIS_URL to also measure the precise path: ETA tasks on a real Celery worker)")
    finally:
        sim.stop()


def precise_path(rest_url: str, user: object, count: int) -> None:
    """Time-triggered orders queued with an ETA at their due time, run by a real worker process."""
    import subprocess

    from django.conf import settings
    from django.utils import timezone

    from celery_app import app
    from trading.models import ScheduledOrder
    from trading.services import scheduled_order_create

    env = dict(
        os.environ,
        UPBIT_REST_URL=rest_url,
        OBSERVATOR_ROLE="worker",
        TRADING_PRECISE_SCHEDULE="true",
        SECRET_KEY=settings.SECRET_KEY,
        FIELD_ENCRYPTION_KEYS=",".join(settings.FIELD_ENCRYPTION_KEYS),
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                print("celery worker did not start; precise path not measured")
                return
        settings.TRADING_PRECISE_SCHEDULE = True
        start = timezone.now()
        sos = [
            scheduled_order_create(
                user=user,
                market="KRW-BTC",
                side="bid",
                ord_type="price",
                price=Decimal(6000),
                trigger_type="time",
                trigger_at=start + timezone.timedelta(seconds=3 + i * 0.23),
            )
            for i in range(count)
        ]
        ids = [s.pk for s in sos]
        deadline = time.monotonic() + 10 + count * 0.23
        while (
            time.monotonic() < deadline and ScheduledOrder.objects.filter(pk__in=ids, fired_at=None).exists()
        ):
            time.sleep(0.2)
        rows = list(ScheduledOrder.objects.filter(pk__in=ids).select_related("order"))
        delays = [(s.fired_at - s.trigger_at).total_seconds() * 1000 for s in rows if s.fired_at is not None]
        acks = [
            (s.order.submitted_at - s.trigger_at).total_seconds() * 1000
            for s in rows
            if s.order is not None and s.order.submitted_at is not None
        ]
        print("== Scheduled-order firing delay, precise path (ETA task on a Celery worker, Redis) ==")
        print(f"fired {len(delays)}/{count}")
        if delays:
            print(fmt("fired_at - due", delays))
            print(fmt("exchange ack of its order - due", acks))
            print(f"target <= 1000 ms: {'met' if max(acks) <= 1000 else 'NOT met'} (max {max(acks):.0f} ms)")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()


if __name__ == "__main__":
    main()
