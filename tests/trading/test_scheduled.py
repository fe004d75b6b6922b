"""Scheduled orders: exactly once with racing workers, after a restart, price triggers, expiry, refusals,
and the beat task run by a real Celery worker process on Redis."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from tests import live
from tests.trading.conftest import d
from trading import services
from trading.models import Order, PaperOrder, ScheduledOrder
from trading.services.scheduled import scheduled_orders_fire_due

pytestmark = pytest.mark.django_db


def schedule(user, **kw):
    args = {
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "price",
        "price": d(10_000),
        "trigger_type": "time",
        "trigger_at": timezone.now() + dt.timedelta(seconds=1),
    }
    args.update(kw)
    return services.scheduled_order_create(user=user, **args)


def make_due(*objs) -> None:
    ScheduledOrder.objects.filter(pk__in=[o.pk for o in objs]).update(
        trigger_at=timezone.now() - dt.timedelta(milliseconds=10)
    )


def test_past_time_is_refused(user, sim):
    with pytest.raises(Exception) as exc:
        schedule(user, trigger_at=timezone.now() - dt.timedelta(seconds=1))
    assert getattr(exc.value, "code", "") == "time_in_past"
    assert ScheduledOrder.objects.count() == 0


def test_naive_time_and_bad_expiry_are_refused_over_the_api(api, sim):
    base = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "10000", "trigger_type": "time"}
    r = api.post(
        "/api/trading/scheduled-orders/", {**base, "trigger_at": "2020-01-01T00:00:00Z"}, format="json"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "time_in_past"
    future = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    r = api.post(
        "/api/trading/scheduled-orders/",
        {**base, "trigger_at": future, "expires_at": timezone.now().isoformat()},
        format="json",
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_expiry"
    r = api.post("/api/trading/scheduled-orders/", {**base, "trigger_type": "price_above"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_trigger"
    assert ScheduledOrder.objects.count() == 0


def test_fires_once_when_due_and_state_is_recorded(user, sim):
    so = schedule(user)
    assert scheduled_orders_fire_due() == []  # not due yet
    make_due(so)
    assert scheduled_orders_fire_due() == [so.pk]
    so.refresh_from_db()
    assert so.state == "filled" and so.order.source == "scheduled" and so.order.state == "done"
    assert so.fired_at is not None
    assert scheduled_orders_fire_due() == []  # and never again
    assert Order.objects.filter(user=user).count() == 1


def test_fire_after_restart_and_crashed_worker(user, sim):
    """The schedule lives in the database; a row left in ``firing`` by a dead worker is re-fired with the
    same idempotency key, so its order exists exactly once."""
    so = schedule(user)
    make_due(so)
    # A worker claimed it, placed the order and died before recording the outcome.
    ScheduledOrder.objects.filter(pk=so.pk).update(
        state="firing", claimed_at=timezone.now() - dt.timedelta(minutes=5)
    )
    services.order_place(
        user=user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        idempotency_key=so.fire_key,
        source="scheduled",
        mode="paper",
    )
    # "Restart": a fresh round of the beat task; nothing but the database carries the state.
    scheduled_orders_fire_due()
    so.refresh_from_db()
    assert so.state == "filled"
    assert Order.objects.filter(user=user).count() == 1 and PaperOrder.objects.filter(user=user).count() == 1


def test_price_trigger_fires_when_the_price_crosses(user, sim):
    above = schedule(user, trigger_type="price_above", trigger_price=d(101_000_000), trigger_at=None)
    below = schedule(
        user,
        trigger_type="price_below",
        trigger_price=d(95_000_000),
        trigger_at=None,
        side="bid",
        ord_type="price",
        price=d(6_000),
    )
    sim.trade("KRW-BTC", 100_000_000.0, 0.001, "BID")
    assert scheduled_orders_fire_due() == []
    sim.trade("KRW-BTC", 101_000_000.0, 0.001, "BID")
    from django.core.cache import cache

    cache.clear()  # the ticker cache lives ~1 s; do not wait for it
    assert scheduled_orders_fire_due() == [above.pk]
    below.refresh_from_db()
    assert below.state == "pending"


def test_expiry(user, sim):
    so = schedule(
        user,
        trigger_type="price_above",
        trigger_price=d(200_000_000),
        trigger_at=None,
        expires_at=timezone.now() + dt.timedelta(seconds=1),
    )
    ScheduledOrder.objects.filter(pk=so.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    scheduled_orders_fire_due()
    so.refresh_from_db()
    assert so.state == "expired" and so.order is None


def test_cancel_pending_only(api, user, sim):
    so = schedule(user)
    r = api.post(f"/api/trading/scheduled-orders/{so.pk}/cancel/")
    assert r.status_code == 200 and r.json()["scheduled_order"]["state"] == "cancelled"
    make_due(so)
    assert scheduled_orders_fire_due() == []
    assert api.delete(f"/api/trading/scheduled-orders/{so.pk}/").status_code == 409


def test_failure_reason_is_recorded(user, sim):
    so = schedule(user, price=d(50_000_000))  # more than the paper account holds
    make_due(so)
    scheduled_orders_fire_due()
    so.refresh_from_db()
    assert so.state == "failed" and "KRW" in so.failure_reason


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_fire_each_exactly_once(user, sim):
    """Two workers (threads with their own database connections) run the beat task at the same moment,
    over and over; every due scheduled order ends with exactly one order. On MariaDB the claim runs
    SELECT ... FOR UPDATE SKIP LOCKED; on SQLite the conditional state transition decides."""
    sos = [schedule(user, price=d(5_000 + i)) for i in range(12)]
    make_due(*sos)
    barrier = threading.Barrier(2)
    fired: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(3):
                barrier.wait(timeout=20)
                fired[n] += scheduled_orders_fire_due()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    all_fired = fired[0] + fired[1]
    assert sorted(all_fired) == sorted(so.pk for so in sos)  # each claimed by exactly one worker
    assert Order.objects.filter(user=user, source="scheduled").count() == 12
    assert PaperOrder.objects.filter(user=user).count() == 12
    assert set(ScheduledOrder.objects.values_list("state", flat=True)) == {"filled"}


@pytest.fixture
def sim_env(sim, monkeypatch):
    """Child processes (the Celery worker) must talk to this simulator too."""
    monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
    monkeypatch.setenv("TRADING_PRECISE_SCHEDULE", "false")
    return sim


@pytest.mark.live
def test_beat_task_through_a_real_celery_worker(user, sim_env, celery_worker_process):
    from celery_app import app

    so = schedule(user)
    make_due(so)
    app.send_task("trading.tasks.fire_due_scheduled_orders", queue="default")

    def fired() -> bool:
        so.refresh_from_db()
        return so.state in ("filled", "failed")

    live.wait_until(fired, timeout=30, message="scheduled order fired by the worker")
    assert so.state == "filled", so.failure_reason
    assert Order.objects.filter(user=user, source="scheduled").count() == 1
    time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_locked_row_is_skipped_not_waited_for(user, sim):
    """MariaDB: while one worker holds a due row locked (mid-claim), another worker's claim skips it at once
    (SKIP LOCKED) instead of blocking or double-claiming; once released it fires exactly once."""
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip(
            "the database has no SELECT ... FOR UPDATE SKIP LOCKED (SQLite serialises writers instead)"
        )
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    locked, other = schedule(user), schedule(user, price=d(6_000))
    make_due(locked, other)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                list(ScheduledOrder.objects.select_for_update().filter(pk=locked.pk))
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    t = threading.Thread(target=holder)
    t.start()
    assert holding.wait(timeout=10)
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        fired = scheduled_orders_fire_due()
    assert time.monotonic() - started < 5  # did not wait for the lock
    assert fired == [other.pk]
    assert any("SKIP LOCKED" in q["sql"].upper() for q in queries.captured_queries)
    release.set()
    t.join(timeout=10)
    assert scheduled_orders_fire_due() == [locked.pk]
    assert Order.objects.filter(user=user, source="scheduled").count() == 2


@pytest.mark.live
def test_precise_eta_path_fires_on_time_without_beat(user, sim_env, celery_worker_process, settings):
    """Time-triggered orders are also queued with an ETA at their due time; the worker fires them within
    milliseconds (the 1 s beat stays the safety net and would find nothing left to do)."""
    settings.TRADING_PRECISE_SCHEDULE = True
    so = schedule(user, trigger_at=timezone.now() + dt.timedelta(seconds=2))

    def fired() -> bool:
        so.refresh_from_db()
        return so.fired_at is not None

    live.wait_until(fired, timeout=30, message="scheduled order fired by its ETA task")
    assert so.state == "filled", so.failure_reason
    assert (so.fired_at - so.trigger_at).total_seconds() < 1.0
    assert scheduled_orders_fire_due() == []
    assert Order.objects.filter(user=user, source="scheduled").count() == 1


def test_beat_lookahead_fires_orders_due_before_the_next_run_on_time(user, sim):
    from trading.tasks import fire_due_scheduled_orders

    soon = schedule(user, trigger_at=timezone.now() + dt.timedelta(milliseconds=400))
    later = schedule(user, trigger_at=timezone.now() + dt.timedelta(seconds=30))
    assert fire_due_scheduled_orders() == 1
    soon.refresh_from_db()
    later.refresh_from_db()
    assert soon.state == "filled" and soon.fired_at >= soon.trigger_at  # never early
    assert (soon.fired_at - soon.trigger_at).total_seconds() < 0.5
    assert later.state == "pending"
