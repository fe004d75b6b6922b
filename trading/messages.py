"""The user events of ``/ws/user/`` that the trading app publishes (group ``user.<id>``), one Struct per kind.

Each is sent as ``{"type": <kind>, "data": {fields}}`` (:class:`core.messages.Frame`). Amounts are
decimal strings (``Decimal`` formatted with ``"f"``), never floats. Apps above trading (auto-trading) publish
their own kinds through the same channel and define them in their own ``messages`` module. Catalogue:
docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.messages import frame


class Hello(msgspec.Struct, kw_only=True):
    """``hello``: sent on every (re)connect; what was pushed while away is lost, so the page re-reads REST."""

    mode: str  # "paper" | "live"
    resync: bool


class ModeEvent(msgspec.Struct, kw_only=True):
    """``mode``: the user switched between paper and live trading."""

    mode: str


class OrderData(msgspec.Struct, kw_only=True):
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


class OrderEvent(msgspec.Struct, kw_only=True):
    """``order``: an order was placed, filled, cancelled or failed (compact; REST has the full one)."""

    order: OrderData


class BalanceItem(msgspec.Struct, kw_only=True):
    currency: str
    balance: str
    locked: str
    avg_buy_price: str


class BalancesEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``balances``: balances moved. Paper balances come with it; live ones are only announced (re-read REST);
    ``reset``: the paper account was reset."""

    mode: str
    balances: list[BalanceItem] | None = None
    reset: bool = False


class ScheduledOrderData(msgspec.Struct, kw_only=True):
    id: int
    mode: str
    market: str
    side: str
    ord_type: str
    state: str
    failure_reason: str
    order_id: int | None


class ScheduledOrderEvent(msgspec.Struct, kw_only=True):
    """``scheduled_order``: a scheduled order was created, fired, failed, expired or cancelled."""

    scheduled_order: ScheduledOrderData


class AutoTradingHaltedEvent(msgspec.Struct, kw_only=True):
    """``auto_trading_halted``: the daily loss limit (or the kill switch) stopped the user's auto-trading."""

    reason: str


USER_EVENTS: dict[str, type[msgspec.Struct]] = {
    "hello": Hello,
    "mode": ModeEvent,
    "order": OrderEvent,
    "balances": BalancesEvent,
    "scheduled_order": ScheduledOrderEvent,
    "auto_trading_halted": AutoTradingHaltedEvent,
}


def user_event_frame(event: dict[str, Any]) -> dict[str, Any]:
    """The browser frame of one channel-layer user event ``{"kind": kind, **fields}``."""
    data = dict(event)
    kind = str(data.pop("kind", "") or "")
    return frame(kind, data)
