"""The auto-trading user events of ``/ws/user/``: :class:`trading.messages.UserEvent` subclasses, published
and sent like trading's own. Amounts are decimal strings. Catalogue: docs/architecture.md."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from trading.messages import UserEvent


class SessionPosition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    volume: str | None
    cost_krw: str | None
    open_orders: int
    manual_reduced_volume: str | None


class SessionData(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    id: int
    market: str
    mode: str
    state: str  # "running" | "stopped"
    threshold: str | None
    threshold_pct: str | None
    order_krw: str | None
    max_position_krw: str | None
    stop_loss: str | None
    cooldown_s: int
    started_at: str | None  # ISO 8601
    stopped_at: str | None
    stop_reason: str
    position: SessionPosition | None = None  # only in REST answers, not in the pushed event


class AutoSessionEvent(UserEvent):
    """``auto_session``: a session started, changed or stopped (the daily loss limit, the kill switch)."""

    kind: ClassVar[str] = "auto_session"

    session: SessionData


class DecisionData(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: int
    session_id: int
    market: str
    prediction_ts: int  # epoch ms of the prediction decided on
    predicted_return: str | None
    horizon_s: float | None
    model_version: str
    best_bid: str | None
    best_ask: str | None
    threshold: str | None
    fee_cost: str | None
    half_spread: str | None
    cost: str | None  # fee_cost + half_spread: the edge is threshold + cost
    manual_adjust_volume: str | None
    action: str  # "buy" | "sell" | "hold" | "skip"
    reason: str
    detail: str
    outcome: str
    order_id: int | None
    order_state: str | None
    created_at: str | None


class AutoDecisionEvent(UserEvent):
    """``auto_decision``: what a running session did with one prediction, and why."""

    kind: ClassVar[str] = "auto_decision"

    decision: DecisionData


USER_EVENTS: dict[str, type[UserEvent]] = {cls.kind: cls for cls in (AutoSessionEvent, AutoDecisionEvent)}
