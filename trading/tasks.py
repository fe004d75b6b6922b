"""Celery tasks of the trading app: thin wrappers that call services (ids in, re-fetch rows, idempotent)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.contrib.auth import get_user_model

from trading.services.orders import live_orders_refresh, orders_reconcile
from trading.services.paper import paper_orders_match
from trading.services.reports import report_send, reports_send_daily
from trading.services.risk import daily_loss_checks_all
from trading.services.scheduled import (
    scheduled_order_claim_one,
    scheduled_order_fire,
    scheduled_orders_fire_due,
)

logger = logging.getLogger(__name__)


@shared_task(
    name="trading.tasks.fire_due_scheduled_orders", ignore_result=True, soft_time_limit=50, time_limit=60
)
def fire_due_scheduled_orders() -> int:
    """Beat, every second: fire due scheduled orders exactly once (safe with many workers)."""
    # Orders due before the next beat (1 s) are claimed now and fired on time.
    return len(scheduled_orders_fire_due(lookahead=dt.timedelta(seconds=1)))


@shared_task(name="trading.tasks.fire_scheduled_order", ignore_result=True, soft_time_limit=50, time_limit=60)
def fire_scheduled_order(scheduled_order_id: int) -> bool:
    """The precise path: queued with an ETA at the due time; the beat task is the safety net."""
    if not scheduled_order_claim_one(scheduled_order_id=scheduled_order_id):
        return False
    scheduled_order_fire(scheduled_order_id=scheduled_order_id)
    return True


@shared_task(name="trading.tasks.sync_open_orders", ignore_result=True, soft_time_limit=50, time_limit=60)
def sync_open_orders() -> int:
    """Beat, every second: fill resting paper limit orders as the market trades through their price, and
    re-read open live orders last seen more than 5 s ago (fills reach the user's socket within seconds)."""
    return paper_orders_match() + live_orders_refresh()


@shared_task(
    name="trading.tasks.reconcile_open_orders", ignore_result=True, soft_time_limit=240, time_limit=300
)
def reconcile_open_orders() -> dict[str, int]:
    """Start-up and every 60 s: settle pending/open orders with their exchange; check daily loss limits."""
    counts = orders_reconcile()
    counts["halted"] = daily_loss_checks_all()
    return counts


@shared_task(
    name="trading.tasks.send_daily_reports", ignore_result=True, soft_time_limit=1800, time_limit=1900
)
def send_daily_reports() -> dict[str, int]:
    return reports_send_daily()


@shared_task(
    name="trading.tasks.send_report",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def send_report(user_id: int) -> None:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is not None:
        report_send(user=user)


@worker_ready.connect
def _reconcile_on_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker that starts (maybe after a crash) first settles whatever was left pending."""
    try:
        reconcile_open_orders.delay()
    except Exception:  # noqa: BLE001 - the periodic run covers it
        logger.warning("could not queue start-up reconciliation", exc_info=True)
