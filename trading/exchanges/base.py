"""The exchange interface trading talks to (Upbit live or the paper exchange), with normalised results.

Implementations raise only ``trading.errors`` types; amounts are ``Decimal``; order states keep Upbit's
vocabulary (``wait``/``watch``/``done``/``cancel``) so one sync routine serves both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from market.upbit.protocol import parse_decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class Balance:
    currency: str
    balance: Decimal
    locked: Decimal
    avg_buy_price: Decimal

    @property
    def total(self) -> Decimal:
        return self.balance + self.locked


@dataclass(frozen=True)
class OrderChance:
    market: str
    bid_fee: Decimal
    ask_fee: Decimal
    min_total: Decimal
    max_total: Decimal
    bid_balance: Balance  # the quote (KRW) account
    ask_balance: Balance  # the base currency account
    state: str = "active"


@dataclass(frozen=True)
class ExchangeTrade:
    uuid: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    created_at: dt.datetime
    fee: Decimal | None = None


@dataclass
class ExchangeOrder:
    uuid: str
    identifier: str | None
    market: str
    side: str
    ord_type: str
    state: str  # wait / watch / done / cancel
    price: Decimal | None
    volume: Decimal | None
    remaining_volume: Decimal | None
    executed_volume: Decimal
    paid_fee: Decimal
    executed_funds: Decimal | None = None
    trades: list[ExchangeTrade] | None = None  # None: this response does not carry trades
    created_at: dt.datetime | None = None
    book_source: str = ""  # paper: "live" or "rest", the book the order was placed against
    book_age_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state in ("wait", "watch")


class Exchange(Protocol):
    """What an account on an exchange offers. ``identifier`` is our idempotency key (unique forever)."""

    mode: str

    def balances(self) -> list[Balance]: ...

    def order_chance(self, *, market: str) -> OrderChance: ...

    def place_order(
        self,
        *,
        market: str,
        side: str,
        ord_type: str,
        volume: Decimal | None,
        price: Decimal | None,
        identifier: str,
    ) -> ExchangeOrder: ...

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder: ...

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder: ...

    def open_orders(self, *, market: str | None = None) -> list[ExchangeOrder]: ...


def _dec(value: Any) -> Decimal | None:
    return parse_decimal(value)


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def balance_from_wire(item: dict[str, Any]) -> Balance:
    return Balance(
        currency=str(item.get("currency", "")),
        balance=_dec(item.get("balance")) or ZERO,
        locked=_dec(item.get("locked")) or ZERO,
        avg_buy_price=_dec(item.get("avg_buy_price")) or ZERO,
    )


def order_from_wire(item: dict[str, Any]) -> ExchangeOrder:
    """An Upbit order object (§6.3) -> ExchangeOrder."""
    trades = None
    if isinstance(item.get("trades"), list):
        trades = []
        for t in item["trades"]:
            price = _dec(t.get("price")) or ZERO
            volume = _dec(t.get("volume")) or ZERO
            funds = _dec(t.get("funds"))
            trades.append(
                ExchangeTrade(
                    uuid=str(t.get("uuid")),
                    price=price,
                    volume=volume,
                    funds=funds if funds is not None else price * volume,
                    created_at=_time(t.get("created_at")) or dt.datetime.now(dt.UTC),
                )
            )
    return ExchangeOrder(
        uuid=str(item.get("uuid") or ""),
        identifier=item.get("identifier"),
        market=str(item.get("market") or ""),
        side=str(item.get("side") or ""),
        ord_type=str(item.get("ord_type") or ""),
        state=str(item.get("state") or "wait"),
        price=_dec(item.get("price")),
        volume=_dec(item.get("volume")),
        remaining_volume=_dec(item.get("remaining_volume")),
        executed_volume=_dec(item.get("executed_volume")) or ZERO,
        paid_fee=_dec(item.get("paid_fee")) or ZERO,
        executed_funds=_dec(item.get("executed_funds")),
        trades=trades,
        created_at=_time(item.get("created_at")),
    )


@dataclass
class Book:
    """A normalised order-book snapshot (best level first on each side)."""

    market: str
    asks: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    bids: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    ts: int = 0
    source: str = "rest"  # "live": the collector's stream (market/livebook.py); "rest": fetched now
    age_ms: int | None = None
