"""The live exchange: Upbit's exchange REST (JWT HS256 per request) through ``market.upbit.client``, with
the user's decrypted keys. Upbit errors become ``trading.errors`` types."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings

from market.upbit.client import UpbitClient
from market.upbit.errors import UpbitError
from market.upbit.protocol import MAX_ORDER_TOTAL_KRW
from trading import errors
from trading.exchanges.base import (
    Balance,
    ExchangeOrder,
    OrderChance,
    balance_from_wire,
    order_from_wire,
)

T = TypeVar("T")
_clients: OrderedDict[tuple[str, str], UpbitClient] = OrderedDict()
_clients_lock = threading.Lock()
_MAX_CLIENTS = 256


def _client_for(access_key: str, secret_key: str) -> UpbitClient:
    """Reuse one client (its connection pool and rate gate) per key pair; a few hundred at most."""
    fingerprint = hashlib.sha256(f"{access_key}\0{secret_key}".encode()).hexdigest()
    key = (settings.UPBIT_REST_URL, fingerprint)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
        client = UpbitClient(
            base_url=settings.UPBIT_REST_URL,
            access_key=access_key,
            secret_key=secret_key,
            timeout=5.0,
            max_retries=2,
            backoff_base=0.1,
            backoff_cap=1.0,
        )
        _clients[key] = client
        while len(_clients) > _MAX_CLIENTS:
            _, old = _clients.popitem(last=False)
            old.close()
        return client


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except UpbitError as exc:
        raise errors.from_upbit(exc) from None


class UpbitExchange:
    mode = "live"

    def __init__(self, *, access_key: str, secret_key: str) -> None:
        self.client = _client_for(access_key, secret_key)

    def balances(self) -> list[Balance]:
        return [balance_from_wire(item) for item in _call(self.client.accounts)]

    def order_chance(self, *, market: str) -> OrderChance:
        data = _call(self.client.order_chance, market)
        m = data.get("market") or {}
        bid = m.get("bid") or {}
        return OrderChance(
            market=market,
            bid_fee=Decimal(str(data.get("bid_fee") or settings.UPBIT_FEE_RATE)),
            ask_fee=Decimal(str(data.get("ask_fee") or settings.UPBIT_FEE_RATE)),
            min_total=Decimal(str(bid.get("min_total") or settings.UPBIT_MIN_ORDER_KRW)),
            max_total=Decimal(str(m.get("max_total") or MAX_ORDER_TOTAL_KRW)),
            bid_balance=balance_from_wire(data.get("bid_account") or {"currency": market.split("-")[0]}),
            ask_balance=balance_from_wire(data.get("ask_account") or {"currency": market.split("-")[1]}),
            state=str(m.get("state") or "active"),
        )

    def place_order(
        self,
        *,
        market: str,
        side: str,
        ord_type: str,
        volume: Decimal | None,
        price: Decimal | None,
        identifier: str,
    ) -> ExchangeOrder:
        data = _call(
            self.client.place_order,
            market=market,
            side=side,
            ord_type=ord_type,
            volume=volume,
            price=price,
            identifier=identifier,
        )
        return order_from_wire(data)

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder:
        return order_from_wire(_call(self.client.cancel_order, uuid=uuid, identifier=identifier))

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder:
        return order_from_wire(_call(self.client.get_order, uuid=uuid, identifier=identifier))

    def open_orders(self, *, market: str | None = None) -> list[ExchangeOrder]:
        return [order_from_wire(o) for o in _call(self.client.open_orders, market=market)]
