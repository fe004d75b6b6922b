"""Scheduled orders: create, cancel, and fire due ones exactly once.

Exactly once, with any number of workers: a due row is claimed by moving it ``pending -> firing`` with a
conditional UPDATE inside a transaction that first locks candidates with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (MariaDB: racing workers skip each other's rows instead of waiting); only the worker whose UPDATE
changed the row fires it. The order it places carries the scheduled order's fixed ``fire_key`` as its
idempotency key, so a re-fire after a crash (a row left in ``firing``) finds the same order again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid as uuid_mod
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import metrics
from core.errors import ApplicationError, NotFound, ValidationFailed
from core.queueing import task_queue
from trading import errors, marketdata
from trading.messages import ScheduledOrderEvent
from trading.models import OrderSource, OrderState, ScheduledOrder, ScheduledState, TriggerType
from trading.selectors import kill_switch_engaged, scheduled_order_event_data
from trading.services.orders import (
    _market_exists,
    idempotency_key_clean,
    order_place,
    order_request_validate,
)
from trading.services.profiles import trading_profile_ensure
from trading.services.realtime import user_event_publish

logger = logging.getLogger(__name__)
FIRE_SCHEDULED_ORDER_TASK = "trading.tasks.fire_scheduled_order"  # the precise (ETA) path
STALE_FIRING = dt.timedelta(seconds=30)
PRECISE_WINDOW = dt.timedelta(minutes=10)


def _publish(so: ScheduledOrder) -> None:
    user_event_publish(
        user_id=so.user_id,
        event=ScheduledOrderEvent(scheduled_order=scheduled_order_event_data(scheduled_order=so)),
    )


def scheduled_order_create(
    *,
    user: Any,
    market: str,
    side: str,
    ord_type: str,
    price: Decimal | None = None,
    volume: Decimal | None = None,
    trigger_type: str,
    trigger_at: dt.datetime | None = None,
    trigger_price: Decimal | None = None,
    expires_at: dt.datetime | None = None,
    client_key: str | None = None,
    now: dt.datetime | None = None,
) -> ScheduledOrder:
    """Validate and store a scheduled order (in the user's current mode). A time in the past is refused."""
    now = now or timezone.now()
    if client_key:
        client_key = idempotency_key_clean(client_key)
        existing = ScheduledOrder.objects.filter(user=user, client_key=client_key).first()
        if existing is not None:
            return existing
    req = order_request_validate(market=market, side=side, ord_type=ord_type, price=price, volume=volume)
    if trigger_type not in TriggerType.values:
        raise ValidationFailed(_("Unknown trigger type."), code="invalid_trigger")
    for value in (trigger_at, expires_at):
        if value is not None and timezone.is_naive(value):
            raise ValidationFailed(_("Times must include a time zone."), code="naive_time")
    if trigger_type == TriggerType.TIME:
        if trigger_at is None:
            raise ValidationFailed(_("Give the date and time to place the order."), code="invalid_trigger")
        if trigger_at <= now:
            raise ValidationFailed(_("The time to place the order is in the past."), code="time_in_past")
        trigger_price = None
    else:
        if trigger_price is None or not trigger_price.is_finite() or trigger_price <= 0:
            raise ValidationFailed(_("Give a positive trigger price."), code="invalid_trigger")
        trigger_at = None
    if expires_at is not None and (
        expires_at <= now or (trigger_at is not None and expires_at <= trigger_at)
    ):
        raise ValidationFailed(
            _("The expiry must be in the future and after the trigger time."), code="invalid_expiry"
        )
    if kill_switch_engaged():
        raise errors.TradingHalted(
            _("Trading is stopped by the operators (kill switch). No orders are accepted.")
        )
    _market_exists(req.market)
    profile = trading_profile_ensure(user=user)
    try:
        with transaction.atomic():
            so = ScheduledOrder.objects.create(
                user=user,
                mode=profile.mode,
                market=req.market,
                side=req.side,
                ord_type=req.ord_type,
                price=req.price,
                volume=req.volume,
                trigger_type=trigger_type,
                trigger_at=trigger_at,
                trigger_price=trigger_price,
                expires_at=expires_at,
                client_key=client_key or None,
                fire_key=f"sched-{uuid_mod.uuid4().hex}",
            )
            _publish(so)
    except IntegrityError:
        existing = ScheduledOrder.objects.filter(user=user, client_key=client_key).first()
        if existing is None:
            raise
        return existing
    if trigger_at is not None and trigger_at - now <= PRECISE_WINDOW and settings.TRADING_PRECISE_SCHEDULE:
        pk, eta = so.pk, trigger_at
        transaction.on_commit(lambda: _queue_precise(pk, eta))
    return so


def _queue_precise(pk: int, eta: dt.datetime) -> None:
    """Queue the ETA task; if the broker is unreachable the 1 s beat still fires the order."""
    try:
        task_queue(FIRE_SCHEDULED_ORDER_TASK, args=[pk], eta=eta)
    except Exception:  # noqa: BLE001 - the schedule is in the database; this is only the fast path
        logger.warning("could not queue the precise firing of scheduled order %s", pk, exc_info=True)


def scheduled_order_cancel(*, user: Any, scheduled_order_id: int) -> ScheduledOrder:
    so = ScheduledOrder.objects.filter(user=user, pk=scheduled_order_id).first()
    if so is None:
        raise NotFound(_("Scheduled order not found."))
    changed = ScheduledOrder.objects.filter(pk=so.pk, state=ScheduledState.PENDING).update(
        state=ScheduledState.CANCELLED, updated_at=timezone.now()
    )
    so.refresh_from_db()
    if not changed:
        raise errors.OrderNotCancelable(_("This scheduled order has already fired or ended."))
    _publish(so)
    return so


def _claim(ids: list[int], now: dt.datetime) -> list[int]:
    claimed = []
    for pk in ids:
        if ScheduledOrder.objects.filter(pk=pk, state=ScheduledState.PENDING).update(
            state=ScheduledState.FIRING, claimed_at=now, updated_at=now
        ):
            claimed.append(pk)
    return claimed


def _claim_due(condition: Q, now: dt.datetime, limit: int) -> list[int]:
    with transaction.atomic():
        ids = list(
            ScheduledOrder.objects.select_for_update(skip_locked=True)
            .filter(condition, state=ScheduledState.PENDING)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        return _claim(ids, now)


def scheduled_orders_expire(*, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    ids = list(
        ScheduledOrder.objects.filter(state=ScheduledState.PENDING, expires_at__lte=now).values_list(
            "id", flat=True
        )
    )
    n = 0
    for pk in ids:
        if ScheduledOrder.objects.filter(pk=pk, state=ScheduledState.PENDING).update(
            state=ScheduledState.EXPIRED, updated_at=now
        ):
            n += 1
            _publish(ScheduledOrder.objects.get(pk=pk))
    return n


def scheduled_orders_fire_due(
    *, now: dt.datetime | None = None, limit: int = 100, lookahead: dt.timedelta = dt.timedelta(0)
) -> list[int]:
    """Fire every due scheduled order once (time reached, price crossed); expire the overdue; re-fire
    rows a crashed worker left in ``firing``. Returns the ids this call fired.

    ``lookahead`` (the beat task passes its own period): time-triggered orders due before the next run
    are claimed now and fired at their time, so a 1 s beat fires them within milliseconds, not up to 1 s
    late."""
    now = now or timezone.now()
    scheduled_orders_expire(now=now)
    claimed = _claim_due(Q(trigger_type=TriggerType.TIME, trigger_at__lte=now), now, limit)
    upcoming: list[int] = []
    if lookahead > dt.timedelta(0):
        window = Q(trigger_type=TriggerType.TIME, trigger_at__gt=now, trigger_at__lte=now + lookahead)
        upcoming = _claim_due(window, now, limit)
    markets = set(
        ScheduledOrder.objects.filter(state=ScheduledState.PENDING)
        .exclude(trigger_type=TriggerType.TIME)
        .values_list("market", flat=True)
    )
    if markets:
        try:
            tickers = marketdata.tickers_get(markets=sorted(markets))
        except ApplicationError as exc:
            logger.warning("price triggers skipped this round: %s", exc.code)
            tickers = {}
        for market, ticker in tickers.items():
            cond = Q(market=market) & (
                Q(trigger_type=TriggerType.PRICE_ABOVE, trigger_price__lte=ticker.price)
                | Q(trigger_type=TriggerType.PRICE_BELOW, trigger_price__gte=ticker.price)
            )
            claimed += _claim_due(cond, now, limit)
    stale = list(
        ScheduledOrder.objects.filter(
            state=ScheduledState.FIRING, claimed_at__lt=now - STALE_FIRING
        ).values_list("id", flat=True)[:limit]
    )
    for pk in claimed + stale:
        _fire_logged(pk)
    if upcoming:
        due = dict(ScheduledOrder.objects.filter(pk__in=upcoming).values_list("pk", "trigger_at"))
        for pk in sorted(upcoming, key=lambda p: due[p]):
            wait = (due[pk] - timezone.now()).total_seconds()
            if wait > 0:
                time.sleep(min(wait, lookahead.total_seconds()))
            _fire_logged(pk)
    return claimed + upcoming


def _fire_logged(pk: int) -> None:
    try:
        scheduled_order_fire(scheduled_order_id=pk)
    except Exception:  # noqa: BLE001 - one broken row must not stop the others
        logger.exception("scheduled order %s could not be fired", pk)


def scheduled_order_claim_one(*, scheduled_order_id: int, now: dt.datetime | None = None) -> bool:
    """Claim one time-triggered order that is due (the precise ETA path); False if not due or taken."""
    now = now or timezone.now()
    cond = Q(pk=scheduled_order_id, trigger_type=TriggerType.TIME, trigger_at__lte=now)
    cond &= Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    return bool(_claim_due(cond, now, 1))


def scheduled_order_fire(*, scheduled_order_id: int) -> ScheduledOrder:
    """Place the order of a claimed (``firing``) scheduled order and record the outcome."""
    so = ScheduledOrder.objects.select_related("user").get(pk=scheduled_order_id)
    if so.state != ScheduledState.FIRING:
        return so
    now = timezone.now()
    metrics.scheduled_fire_delay(so, now)
    try:
        order = order_place(
            user=so.user,
            market=so.market,
            side=so.side,
            ord_type=so.ord_type,
            price=so.price,
            volume=so.volume,
            idempotency_key=so.fire_key,
            source=OrderSource.SCHEDULED,
            mode=so.mode,
        )
    except (errors.ExchangeUnavailable, errors.ExchangeRateLimited) as exc:
        # Transient: with an order row the outcome is just unknown; without one nothing was sent.
        order_id = exc.extra.get("order_id")
        if order_id:  # sent, outcome unknown: the order row exists and reconciliation settles it
            updates = {"state": ScheduledState.FIRED, "order_id": order_id, "fired_at": now}
        else:  # not sent at all (no price, exchange down before sending): try again next round
            updates = (
                {"state": ScheduledState.PENDING, "claimed_at": None}
                if not _expired(so, now)
                else {"state": ScheduledState.EXPIRED}
            )
            if so.trigger_type == TriggerType.TIME and not _expired(so, now):
                updates["failure_reason"] = str(exc.message)[:300]
    except ApplicationError as exc:
        updates = {"state": ScheduledState.FAILED, "failure_reason": str(exc.message)[:300], "fired_at": now}
    else:
        state = ScheduledState.FILLED if order.state == OrderState.DONE else ScheduledState.FIRED
        if order.state == OrderState.REJECTED:
            state = ScheduledState.FAILED
            updates = {
                "state": state,
                "failure_reason": order.error_message,
                "order_id": order.pk,
                "fired_at": now,
            }
        else:
            updates = {"state": state, "order_id": order.pk, "fired_at": now}
    ScheduledOrder.objects.filter(pk=so.pk, state=ScheduledState.FIRING).update(updated_at=now, **updates)
    so.refresh_from_db()
    _publish(so)
    return so


def _expired(so: ScheduledOrder, now: dt.datetime) -> bool:
    return so.expires_at is not None and so.expires_at <= now
