"""The user events of ``/ws/user/`` that the trading app publishes (group ``user.<id>``), one Struct per kind.

Every event is a :class:`UserEvent` whose class constant ``kind`` names it; publishers build one and hand it
to ``trading.services.realtime.user_event_publish``. The browser gets ``{"type": <kind>, "data": {fields}}``
(:class:`core.messages.Frame`). Amounts are decimal strings (``Decimal`` formatted with ``"f"``), never
floats. Apps above trading (auto-trading) subclass :class:`UserEvent` in their own ``messages`` module.
Catalogue: docs/architecture.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from core.messages import frame


class UserEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every ``/ws/user/`` event: ``kind`` is the frame's ``type``; the fields are its ``data``."""

    kind: ClassVar[str] = ""


class Hello(UserEvent):
    """``hello``: sent on every (re)connect; what was pushed while away is lost, so the page re-reads REST."""

    kind: ClassVar[str] = "hello"

    mode: str  # "paper" | "live"
    resync: bool


class ModeEvent(UserEvent):
    """``mode``: the user switched between paper and live trading."""

    kind: ClassVar[str] = "mode"

    mode: str


class OrderData(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: int
    mode: str
    market: str
    side: str  # "bid" | "ask"
    ord_type: str  # "limit" | "price" | "market"
    price: str | None
    volume: str | None
    state: str
    source: str
    executed_volume: str | None
    executed_funds: str | None
    paid_fee: str | None
    error_code: str
    error_message: str


class OrderEvent(UserEvent):
    """``order``: an order was placed, filled, cancelled or failed (compact; REST has the full one)."""

    kind: ClassVar[str] = "order"

    order: OrderData


class BalanceItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    currency: str
    balance: str
    locked: str
    avg_buy_price: str


class BalancesEvent(UserEvent, omit_defaults=True):
    """``balances``: balances moved. Paper balances come with it; live ones are only announced (re-read REST);
    ``reset``: the paper account was reset."""

    kind: ClassVar[str] = "balances"

    mode: str
    balances: list[BalanceItem] | None = None
    reset: bool = False


class ScheduledOrderData(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: int
    mode: str
    market: str
    side: str
    ord_type: str
    state: str
    failure_reason: str
    order_id: int | None


class ScheduledOrderEvent(UserEvent):
    """``scheduled_order``: a scheduled order was created, fired, failed, expired or cancelled."""

    kind: ClassVar[str] = "scheduled_order"

    scheduled_order: ScheduledOrderData


class AutoTradingHaltedEvent(UserEvent):
    """``auto_trading_halted``: the daily loss limit (or the kill switch) stopped the user's auto-trading."""

    kind: ClassVar[str] = "auto_trading_halted"

    reason: str


USER_EVENTS: dict[str, type[UserEvent]] = {
    cls.kind: cls
    for cls in (Hello, ModeEvent, OrderEvent, BalancesEvent, ScheduledOrderEvent, AutoTradingHaltedEvent)
}


def user_event_message(event: UserEvent) -> dict[str, Any]:
    """The channel-layer body of ``event``: ``{"kind": kind, **fields}`` as JSON builtins."""
    if not isinstance(event, UserEvent) or not event.kind:
        raise TypeError(f"not a user event: {event!r}")
    return {"kind": event.kind, **msgspec.to_builtins(event)}


def user_event_frame(event: dict[str, Any]) -> dict[str, Any]:
    """The browser frame of one channel-layer user event ``{"kind": kind, **fields}``."""
    data = dict(event)
    kind = str(data.pop("kind", "") or "")
    return frame(kind, data)
