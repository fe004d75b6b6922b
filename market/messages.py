"""Messages the market app publishes: the collector -> ML batch and the live market events of ``/ws/market/``.

Defined once here (the lowest app that owns them); docs/architecture.md has the catalogue. Numbers are
JSON numbers: exact integers stay integers (KRW prices), the rest are floats rounded to 8 decimals.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from core.messages import Message

Number = int | float


class MarketBatch(Message, forbid_unknown_fields=True):
    """Collector -> ML worker, every ~1 s: the new order books and trades of every market in one packed block.

    The arrays are base64 text of little-endian binary arrays (JSON-safe; the worker decodes them with
    :mod:`market.batchwire`'s compiled decoder: ``batchwire.decode(msgspec.structs.asdict(batch))``)."""

    topic = "market.batch"

    v: int
    codes: list[str]
    levels: int
    book_n: list[int]  # order books per market, in ``codes`` order
    trade_n: list[int]  # trades per market
    ts: str  # int64 [N]
    book: str  # float64 [N, 4, levels]: ask_px, ask_sz, bid_px, bid_sz
    t_ts: str  # int64 [T]
    t_price: str  # float64 [T]
    t_volume: str  # float64 [T]
    t_side: str  # int8 [T]: +1 buyer-initiated, -1 seller-initiated


# -- live market events (channel-layer group ``market.<CODE>``, type ``market.<kind>``) -------------------


class OrderbookEvent(msgspec.Struct, kw_only=True):
    """``orderbook``: the top levels per side, best first; each level ``[price, size, cumulative size]``."""

    market: str
    ts: int  # exchange time, epoch ms
    asks: list[list[Number]]  # ascending
    bids: list[list[Number]]  # descending
    total_ask_size: Number | None
    total_bid_size: Number | None
    spread: Number | None
    mid: Number | None


class TradeItem(msgspec.Struct, kw_only=True):
    ts: int  # trade time, epoch ms
    price: Number | None
    volume: Number | None
    side: Literal["BID", "ASK", ""]  # BID = buyer-initiated
    sid: int | None  # Upbit's sequential id


class TradesEvent(msgspec.Struct, kw_only=True):
    """``trade``: the trades since the last event of the market, oldest first."""

    market: str
    trades: list[TradeItem]


class TickerEvent(msgspec.Struct, kw_only=True):
    """``ticker``: price and day statistics; ``change_rate`` is a signed ratio (0.01 = 1 %)."""

    market: str
    ts: int
    price: Number | None
    open: Number | None
    high: Number | None
    low: Number | None
    prev_close: Number | None
    change: Literal["RISE", "EVEN", "FALL"] | None
    change_price: Number | None  # signed
    change_rate: float | None  # signed
    volume_24h: Number | None
    value_24h: Number | None
    acc_volume: Number | None
    acc_value: Number | None


MARKET_EVENTS: dict[str, type[msgspec.Struct]] = {
    "orderbook": OrderbookEvent,
    "trade": TradesEvent,
    "ticker": TickerEvent,
}


def market_group(market: str) -> str:
    """The channel-layer group of one market's live events (any app may publish to it; the hub relays)."""
    return f"market.{market}"


def market_event(kind: str, data: msgspec.Struct | dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message of a live event: ``{"type": "market.<kind>", "data": {...}}``."""
    body = data if isinstance(data, dict) else msgspec.to_builtins(data)
    return {"type": f"market.{kind}", "data": body}
