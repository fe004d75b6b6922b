"""Live fan-out: turns parsed Upbit updates into compact browser payloads and publishes them, coalesced.

The collector calls :meth:`MarketFanout.submit` (or the ``orderbook``/``trade``/``ticker`` shortcuts) for
every parsed update. Updates are converted lazily and published to the Channels group ``market.<CODE>``
through :func:`core.realtime.apublish_many`, at most once per market every ``interval`` seconds
(leading edge: the first update after a quiet period goes out at once). Within a window the latest order
book and ticker win; trades are batched (never dropped up to ``max_trades`` per window) so the tape is
complete.

Event payloads (the ``data`` of ``{"type": "market.<kind>", "data": ...}``; the Structs of
:mod:`market.messages`), numbers as JSON numbers:

* ``market.orderbook``: ``{"market", "ts", "asks": [[price, size, cum_size], ...] (best first, ascending),
  "bids": [[price, size, cum_size], ...] (best first, descending), "total_ask_size", "total_bid_size",
  "spread", "mid"}`` limited to the top ``levels`` levels per side; ``cum_size`` is the cumulative depth.
* ``market.trade``: ``{"market", "trades": [{"ts", "price", "volume", "side": "BID"|"ASK", "sid"}, ...]}``
  oldest first; ``BID`` = buyer-initiated.
* ``market.ticker``: ``{"market", "ts", "price", "open", "high", "low", "prev_close", "change"
  ("RISE"|"EVEN"|"FALL"), "change_price" (signed), "change_rate" (signed ratio, 0.01 = 1 %),
  "volume_24h", "value_24h", "acc_volume", "acc_value"}``.

Inputs are records from :mod:`market.upbit.records` (the collector's parser) or dicts in Upbit's WebSocket
DEFAULT or SIMPLE format or its REST answers; each builder reads those, by Upbit's field names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec
from django.conf import settings

from core import realtime
from market.livebook import alivebook_share
from market.messages import (
    OrderbookEvent,
    TickerEvent,
    TradeItem,
    TradesEvent,
    market_event,
    market_group,
)
from market.upbit.protocol import to_default
from market.upbit.records import OrderbookRecord, TickerRecord, TradeRecord

logger = logging.getLogger(__name__)

KINDS = ("orderbook", "trade", "ticker")
DEFAULT_LEVELS = 15
DEFAULT_INTERVAL = 0.05
DEFAULT_MAX_TRADES = 100

# The kind of each record type of the collector's parser (no guessing from names).
_RECORD_KINDS: dict[type, str] = {OrderbookRecord: "orderbook", TradeRecord: "trade", TickerRecord: "ticker"}


def group_name(market: str) -> str:
    return market_group(market)


# ------------------------------------------------------------------------------------------------------
# Inputs: records of market.upbit.records, or Upbit dicts (WebSocket DEFAULT or SIMPLE, REST)
# ------------------------------------------------------------------------------------------------------


def _upbit_dict(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """DEFAULT/REST keys for an Upbit dict (a SIMPLE-format message, keyed ``ty``, is translated)."""
    return to_default(obj) if "ty" in obj and "type" not in obj else obj


def _num(value: Any) -> float | int | None:
    """A JSON-friendly number: exact integers stay integers (KRW prices), the rest floats (8 decimals)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    if f.is_integer() and abs(f) < 2**53:
        return int(f)
    return round(f, 8)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def market_of(update: Any) -> str | None:
    """The market of a record (``code``) or an Upbit dict (``code`` on the WebSocket, ``market`` in REST)."""
    if isinstance(update, Mapping):
        update = _upbit_dict(update)
        code = update.get("code") or update.get("market")
    else:
        code = getattr(update, "code", None)
    return str(code).upper() if code else None


def kind_of(update: Any) -> str | None:
    """``orderbook`` / ``trade`` / ``ticker`` for a record or an Upbit dict; ``None`` when unknown."""
    if not isinstance(update, Mapping):
        return _RECORD_KINDS.get(type(update))
    update = _upbit_dict(update)
    kind = update.get("type")
    if kind in KINDS:
        return str(kind)
    # REST answers carry no type: their shape tells (GET /orderbook, /trades/ticks, /ticker).
    if "orderbook_units" in update:
        return "orderbook"
    if "ask_bid" in update and "sequential_id" in update:
        return "trade"
    if "signed_change_rate" in update or "prev_closing_price" in update:
        return "ticker"
    return None


# ------------------------------------------------------------------------------------------------------
# Event builders (pure): one input -> the typed event of market.messages
# ------------------------------------------------------------------------------------------------------


def _book_sides(book: Any) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    if isinstance(book, OrderbookRecord):
        rows = book.rows  # (ask_price, bid_price, ask_size, bid_size) per level
        return [(r[0], r[2]) for r in rows], [(r[1], r[3]) for r in rows]
    units = book.get("orderbook_units")
    if units is None:
        raise ValueError("order book without levels")
    return (
        [(u.get("ask_price"), u.get("ask_size")) for u in units],
        [(u.get("bid_price"), u.get("bid_size")) for u in units],
    )


def _cumulate(levels: Iterable[tuple[Any, Any]], limit: int) -> tuple[list[list[float | int]], float]:
    out: list[list[float | int]] = []
    cum = 0.0
    for price, size in levels:
        p = _num(price)
        s = float(size or 0.0)
        if not p or p <= 0 or s <= 0:  # Upbit pads thin books with zero levels
            continue
        cum += s
        out.append([p, round(s, 8), round(cum, 8)])
        if len(out) >= limit:
            break
    return out, cum


def orderbook_event(book: Any, *, levels: int = DEFAULT_LEVELS) -> OrderbookEvent:
    if isinstance(book, Mapping):
        book = _upbit_dict(book)
    asks_raw, bids_raw = _book_sides(book)
    asks, ask_depth = _cumulate(asks_raw, levels)
    bids, bid_depth = _cumulate(bids_raw, levels)
    best_ask = asks[0][0] if asks else None
    best_bid = bids[0][0] if bids else None
    spread = _num(best_ask - best_bid) if best_ask is not None and best_bid is not None else None
    mid = _num((best_ask + best_bid) / 2) if best_ask is not None and best_bid is not None else None
    if isinstance(book, OrderbookRecord):
        ts, total_ask, total_bid = book.ts, book.total_ask_size, book.total_bid_size
    else:
        ts = book.get("timestamp")
        total_ask = book.get("total_ask_size", ask_depth)
        total_bid = book.get("total_bid_size", bid_depth)
    return OrderbookEvent(
        market=market_of(book) or "",
        ts=_int(ts) or _now_ms(),
        asks=asks,
        bids=bids,
        total_ask_size=_num(ask_depth if total_ask is None else total_ask),
        total_bid_size=_num(bid_depth if total_bid is None else total_bid),
        spread=spread,
        mid=mid,
    )


def trade_event_item(trade: Any) -> TradeItem:
    side: Literal["BID", "ASK", ""]
    if isinstance(trade, TradeRecord):  # side: +1 buyer-initiated, -1 seller-initiated
        ts, price, volume, sid = trade.ts, trade.price, trade.volume, trade.sequential_id
        side = "BID" if trade.side > 0 else "ASK"
    else:
        trade = _upbit_dict(trade)
        # The WebSocket names the trade time trade_timestamp; REST /trades/ticks only has timestamp.
        ts = trade.get("trade_timestamp") or trade.get("timestamp")
        price, volume, sid = trade.get("trade_price"), trade.get("trade_volume"), trade.get("sequential_id")
        raw = str(trade.get("ask_bid") or "").upper()
        side = "BID" if raw == "BID" else "ASK" if raw == "ASK" else ""
    return TradeItem(
        ts=_int(ts) or _now_ms(), price=_num(price), volume=_num(volume), side=side, sid=_int(sid)
    )


def trades_event(market: str, trades: Iterable[Any]) -> TradesEvent:
    return TradesEvent(market=market, trades=[trade_event_item(t) for t in trades])


def ticker_event(ticker: Any) -> TickerEvent:
    # TickerRecord's attributes carry Upbit's DEFAULT names, so one accessor reads both.
    if isinstance(ticker, Mapping):
        ticker = _upbit_dict(ticker)
        get = ticker.get
        ts = get("timestamp") or get("trade_timestamp")
    else:
        record = ticker

        def get(name: str) -> Any:
            return getattr(record, name, None)

        ts = record.trade_timestamp  # the time of the last trade, which the chart plots the price at
    price = _num(get("trade_price"))
    prev_close = _num(get("prev_closing_price"))
    change_price = get("signed_change_price")
    change_rate = get("signed_change_rate")
    if change_price is None and price is not None and prev_close:
        change_price = price - prev_close
    if change_rate is None and change_price is not None and prev_close:
        change_rate = float(change_price) / float(prev_close)
    change = get("change")
    if change is None and change_price is not None:
        change = "RISE" if change_price > 0 else "FALL" if change_price < 0 else "EVEN"
    return TickerEvent(
        market=market_of(ticker) or "",
        ts=_int(ts) or _now_ms(),
        price=price,
        open=_num(get("opening_price")),
        high=_num(get("high_price")),
        low=_num(get("low_price")),
        prev_close=prev_close,
        change=change,
        change_price=_num(change_price),
        change_rate=None if change_rate is None else round(float(change_rate), 10),
        volume_24h=_num(get("acc_trade_volume_24h")),
        value_24h=_num(get("acc_trade_price_24h")),
        acc_volume=_num(get("acc_trade_volume")),
        acc_value=_num(get("acc_trade_price")),
    )


# The same events as JSON builtins (REST answers and snapshots use them).


def orderbook_payload(book: Any, *, levels: int = DEFAULT_LEVELS) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(orderbook_event(book, levels=levels))
    return out


def trade_item(trade: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(trade_event_item(trade))
    return out


def trades_payload(market: str, trades: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(trades_event(market, trades))
    return out


def ticker_payload(ticker: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(ticker_event(ticker))
    return out


def event(kind: str, data: msgspec.Struct | dict[str, Any]) -> dict[str, Any]:
    return market_event(kind, data)


# ------------------------------------------------------------------------------------------------------
# Coalescing publisher
# ------------------------------------------------------------------------------------------------------

Publisher = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[None]]


class _Pending:
    __slots__ = ("orderbook", "ticker", "trades")

    def __init__(self) -> None:
        self.orderbook: Any = None
        self.ticker: Any = None
        self.trades: list[Any] = []

    def empty(self) -> bool:
        return self.orderbook is None and self.ticker is None and not self.trades


class MarketFanout:
    """Coalesces updates per market and publishes at most every ``interval`` seconds per market.

    Use from the collector's event loop: ``await fanout.start()``, then ``fanout.submit(update)`` (cheap,
    never blocks, never raises on bad input), and ``await fanout.aclose()`` on shutdown (flushes).
    ``submit`` may also be called from another thread; it hops onto the fan-out's loop.
    """

    def __init__(
        self,
        *,
        interval: float | None = None,
        levels: int | None = None,
        max_trades: int = DEFAULT_MAX_TRADES,
        publisher: Publisher | None = None,
        share_books: bool = True,
    ) -> None:
        if interval is None or levels is None:
            if interval is None:
                interval = float(settings.MARKET_FANOUT_INTERVAL_MS) / 1000.0
            if levels is None:
                levels = int(settings.MARKET_FANOUT_LEVELS)
        self.interval = max(0.0, interval)
        self.levels = levels
        self.max_trades = max_trades
        self._publish: Publisher = publisher or realtime.apublish_many
        # Only the real publisher shares books: a test or benchmark publisher's books are not the market's.
        self.share_books = share_books and publisher is None
        self._pending: dict[str, _Pending] = {}
        self._next_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.published_events = 0
        self.submitted = 0
        self.dropped_invalid = 0

    async def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="market-fanout")

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        await self._flush(force=True)

    async def __aenter__(self) -> MarketFanout:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- input ----------------------------------------------------------------------------------------

    def submit(self, update: Any, *, kind: str | None = None) -> None:
        loop = self._loop
        if loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._accept, update, kind)
                return
        self._accept(update, kind)

    def orderbook(self, book: Any) -> None:
        self.submit(book, kind="orderbook")

    def trade(self, trade: Any) -> None:
        self.submit(trade, kind="trade")

    def ticker(self, ticker: Any) -> None:
        self.submit(ticker, kind="ticker")

    def submit_many(self, updates: Iterable[Any]) -> None:
        for update in updates:
            self.submit(update)

    def _accept(self, update: Any, kind: str | None) -> None:
        kind = kind or kind_of(update)
        market = market_of(update)
        if kind not in KINDS or not market:
            self.dropped_invalid += 1
            return
        self.submitted += 1
        pending = self._pending.get(market)
        if pending is None:
            pending = self._pending[market] = _Pending()
        if kind == "orderbook":
            pending.orderbook = update
        elif kind == "ticker":
            pending.ticker = update
        else:
            pending.trades.append(update)
            if len(pending.trades) > self.max_trades:
                del pending.trades[: len(pending.trades) - self.max_trades]
        self._wake.set()

    # -- output ---------------------------------------------------------------------------------------

    def _build(self, market: str, pending: _Pending) -> list[tuple[str, dict[str, Any]]]:
        group = group_name(market)
        out: list[tuple[str, dict[str, Any]]] = []
        try:
            if pending.orderbook is not None:
                book = orderbook_event(pending.orderbook, levels=self.levels)
                out.append((group, market_event("orderbook", book)))
            if pending.trades:
                out.append((group, market_event("trade", trades_event(market, pending.trades))))
            if pending.ticker is not None:
                out.append((group, market_event("ticker", ticker_event(pending.ticker))))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A malformed update must never stop the stream; the next one replaces it.
            self.dropped_invalid += 1
            logger.warning("fanout: skipped malformed %s update: %s", market, exc)
        return out

    async def _flush(self, *, force: bool = False) -> None:
        """Publish every market that is due (every market with pending updates when ``force``)."""
        now = time.monotonic()
        messages: list[tuple[str, dict[str, Any]]] = []
        for market in list(self._pending):
            pending = self._pending[market]
            if pending.empty():
                continue
            if not force and self._next_at.get(market, 0.0) > now:
                continue
            self._pending[market] = _Pending()
            self._next_at[market] = now + self.interval
            messages.extend(self._build(market, pending))
        if messages:
            try:
                await self._publish(messages)
                self.published_events += len(messages)
            except Exception:  # noqa: BLE001 - realtime is best effort; keep the collector running
                logger.exception("fanout: publish failed")
            if self.share_books:
                books = [m["data"] for _g, m in messages if m["type"] == "market.orderbook"]
                try:
                    # With Redis, every process's paper fills read these (market/livebook.py).
                    await alivebook_share(books=books)
                except Exception:  # noqa: BLE001 - the REST fallback still fills paper orders
                    logger.exception("fanout: sharing the live books failed")

    def _next_delay(self) -> float | None:
        now = time.monotonic()
        delay: float | None = None
        for market, pending in self._pending.items():
            if pending.empty():
                continue
            wait = max(0.0, self._next_at.get(market, 0.0) - now)
            delay = wait if delay is None else min(delay, wait)
        return delay

    async def _run(self) -> None:
        while not self._closing:
            await self._flush()
            self._wake.clear()
            delay = self._next_delay()
            if delay == 0.0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
