"""Auto-trading reads: a user's sessions and decision log, the kept threshold, a session's position from its
orders' fills, and the API's (and the pushes') shape of a session and a decision."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
from django.db.models import Q, QuerySet

from autotrade import messages
from autotrade.models import (
    DEFAULT_THRESHOLD,
    AutoTradeAction,
    AutoTradeDecision,
    AutoTradeSession,
    AutoTradeSettings,
)
from autotrade.rule import ZERO, SessionPosition
from trading.models import OPEN_ORDER_STATES, Side

VOLUME_Q = Decimal("0.00000001")
MAX_THRESHOLD = Decimal("0.05")  # 5 %: anything above is a typo, not a strategy


def autotrade_threshold_get(*, user: Any) -> Decimal:
    """The user's chosen profit threshold (fraction), the default for a user who never chose one."""
    value = AutoTradeSettings.objects.filter(user_id=user.pk).values_list("threshold", flat=True).first()
    return DEFAULT_THRESHOLD if value is None else value


def session_position(*, session: AutoTradeSession) -> SessionPosition:
    """The session's own position from its orders' fills (average cost, fees in), less the cuts recorded
    when the account held less than that (the user sold some by hand): replayed in the order they happened.
    Manual buys of the same coin are the user's, never the session's."""
    volume = cost = reduced = ZERO
    open_orders = 0
    opened_at: dt.datetime | None = None
    rows = (
        AutoTradeDecision.objects.filter(session=session)
        .filter(Q(order__isnull=False) | Q(manual_adjust_volume__isnull=False))
        .select_related("order")
        .order_by("created_at", "id")
    )
    for d in rows:
        if d.manual_adjust_volume is not None and d.manual_adjust_volume > 0:
            cut = min(d.manual_adjust_volume, volume)
            if volume > 0:
                cost -= cost * cut / volume
            volume -= cut
            reduced += d.manual_adjust_volume
        o = d.order
        if o is None:
            continue
        if o.state in OPEN_ORDER_STATES:
            open_orders += 1
        if o.executed_volume <= 0:
            continue
        if o.side == Side.BID:
            if volume <= 0:
                opened_at = d.created_at
            volume += o.executed_volume
            cost += o.executed_funds + o.paid_fee
        else:
            sold = min(o.executed_volume, volume)
            if volume > 0:
                cost -= cost * sold / volume
            volume -= sold
        if volume <= 0:
            opened_at = None
    if volume <= 0:
        volume, cost, opened_at = ZERO, ZERO, None
    return SessionPosition(
        volume=volume, cost=cost, open_orders=open_orders, manual_reduced=reduced, opened_at=opened_at
    )


def autotrade_sessions_list(*, user: Any) -> QuerySet[AutoTradeSession]:
    return AutoTradeSession.objects.filter(user=user).order_by("-started_at", "-id")


def autotrade_decisions_list(
    *, user: Any, session_id: int | None = None, market: str | None = None, actions_only: bool = False
) -> QuerySet[AutoTradeDecision]:
    qs = AutoTradeDecision.objects.filter(user=user).select_related("order")
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    if market:
        qs = qs.filter(market=market.strip().upper())
    if actions_only:
        qs = qs.exclude(action=AutoTradeAction.HOLD)
    return qs.order_by("-prediction_ts", "-id")


def _s(v: Decimal | None) -> str | None:
    return None if v is None else format(v.normalize(), "f")


def threshold_str(value: Decimal) -> str:
    """A threshold as the API writes it: plain decimal, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def session_event_data(*, session: AutoTradeSession, with_position: bool = True) -> messages.SessionData:
    """A session as the ``auto_session`` event (``with_position=False``) and the API show it."""
    position = None
    if with_position:
        pos = session_position(session=session)
        position = messages.SessionPosition(
            volume=_s(pos.volume),
            cost_krw=_s(pos.cost.quantize(VOLUME_Q)),
            open_orders=pos.open_orders,
            manual_reduced_volume=_s(pos.manual_reduced),
        )
    return messages.SessionData(
        id=session.pk,
        market=session.market,
        mode=session.mode,
        state=session.state,
        threshold=_s(session.threshold),
        threshold_pct=_s(session.threshold * 100),
        order_krw=_s(session.order_krw),
        max_position_krw=_s(session.max_position_krw),
        stop_loss=_s(session.stop_loss),
        cooldown_s=session.cooldown_s,
        started_at=session.started_at.isoformat() if session.started_at else None,
        stopped_at=session.stopped_at.isoformat() if session.stopped_at else None,
        stop_reason=session.stop_reason,
        position=position,
    )


def session_data(*, session: AutoTradeSession, with_position: bool = True) -> dict[str, Any]:
    """:func:`session_event_data` as JSON builtins (the API's answer)."""
    return msgspec.to_builtins(session_event_data(session=session, with_position=with_position))


def decision_event_data(*, decision: AutoTradeDecision) -> messages.DecisionData:
    """A decision as the ``auto_decision`` event and the API's decision log show it."""
    return messages.DecisionData(
        id=decision.pk,
        session_id=decision.session_id,
        market=decision.market,
        prediction_ts=decision.prediction_ts,
        predicted_return=_s(decision.predicted_return),
        horizon_s=decision.horizon_s,
        model_version=decision.model_version,
        best_bid=_s(decision.best_bid),
        best_ask=_s(decision.best_ask),
        threshold=_s(decision.threshold),
        fee_cost=_s(decision.fee_cost),
        half_spread=_s(decision.half_spread),  # AUTOTRADE_SPREAD_COST_FACTOR x spread / mid
        cost=_s(decision.cost),
        manual_adjust_volume=_s(decision.manual_adjust_volume),
        action=decision.action,
        reason=decision.reason,
        detail=decision.detail,
        outcome=decision.outcome,
        order_id=decision.order_id,
        order_state=decision.order.state if decision.order_id else None,
        created_at=decision.created_at.isoformat() if decision.created_at else None,
    )


def decision_data(*, decision: AutoTradeDecision) -> dict[str, Any]:
    """:func:`decision_event_data` as JSON builtins (the API's decision log)."""
    return msgspec.to_builtins(decision_event_data(decision=decision))
