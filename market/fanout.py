"""Live fan-out: turns parsed Upbit updates into compact browser payloads and publishes them, coalesced.

The collector calls :meth:`MarketFanout.submit` (or the ``orderbook``/``trade``/``ticker`` shortcuts) for
every parsed update. Updates are converted lazily and published to the Channels group ``market.<CODE>``
through :func:`core.realtime.apublish_many`, at most once per market every ``interval`` seconds
(leading edge: the first update after a quiet period goes out at once). Within a window the latest order
book and ticker win; trades are batched (never dropped up to ``max_trades`` per window) so the tape is
complete.

Event payloads (the ``data`` of ``{"type": "market.<kind>", "data": ...}``), numbers as JSON numbers:

* ``market.orderbook``: ``{"market", "ts", "asks": [[price, size, cum_size], ...] (best first, ascending),
  "bids": [[price, size, cum_size], ...] (best first, descending), "total_ask_size", "total_bid_size",
  "spread", "mid"}`` limited to the top ``levels`` levels per side; ``cum_size`` is the cumulative depth.
* ``market.trade``: ``{"market", "trades": [{"ts", "price", "volume", "side": "BID"|"ASK", "sid"}, ...]}``
  oldest first; ``BID`` = buyer-initiated.
* ``market.ticker``: ``{"market", "ts", "price", "open", "high", "low", "prev_close", "change"
  ("RISE"|"EVEN"|"FALL"), "change_price" (signed), "change_rate" (signed ratio, 0.01 = 1 %),
  "volume_24h", "value_24h", "acc_volume", "acc_value"}``.

Inputs may be records from :mod:`market.upbit.records` (attribute access) or plain dicts in Upbit's
DEFAULT, SIMPLE or REST shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from core import realtime
from market.livebook import alivebook_share

logger = logging.getLogger(__name__)

KINDS = ("orderbook", "trade", "ticker")
DEFAULT_LEVELS = 15
DEFAULT_INTERVAL = 0.05
DEFAULT_MAX_TRADES = 100

_SIMPLE_MARKERS = ("ty", "cd", "obu", "tp")


def group_name(market: str) -> str:
    return f"market.{market}"


# ------------------------------------------------------------------------------------------------------
# Field access that works for records (attributes) and dicts (DEFAULT / SIMPLE / REST keys)
# ------------------------------------------------------------------------------------------------------


def _normalise_dict(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if "type" not in obj and "market" not in obj and any(k in obj for k in _SIMPLE_MARKERS):
        from market.upbit.protocol import to_default

        return to_default(obj)
    return obj


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        for name in names:
            if name in obj and obj[name] is not None:
                return obj[name]
        return default
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


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
    if isinstance(update, Mapping):
        update = _normalise_dict(update)
    code = _get(update, "market", "code")
    return str(code).upper() if code else None


def kind_of(update: Any) -> str | None:
    """``orderbook`` / ``trade`` / ``ticker`` for a record or an Upbit dict; ``None`` when unknown."""
    if isinstance(update, Mapping):
        update = _normalise_dict(update)
        kind = update.get("type")
        if kind in KINDS:
            return str(kind)
        if "orderbook_units" in update:
            return "orderbook"
        if "ask_bid" in update and "sequential_id" in update:
            return "trade"
        if "signed_change_rate" in update or "prev_closing_price" in update:
            return "ticker"
        return None
    kind = getattr(update, "kind", None) or getattr(update, "type", None)
    if isinstance(kind, str) and kind in KINDS:
        return kind
    name = type(update).__name__.lower()
    for candidate in KINDS:
        if candidate in name:
            return candidate
    return None


# ------------------------------------------------------------------------------------------------------
# Payload builders (pure)
# ------------------------------------------------------------------------------------------------------


def _levels_from_units(units: Iterable[Any]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    asks: list[tuple[Any, Any]] = []
    bids: list[tuple[Any, Any]] = []
    for unit in units:
        asks.append((_get(unit, "ask_price", "ap"), _get(unit, "ask_size", "as")))
        bids.append((_get(unit, "bid_price", "bp"), _get(unit, "bid_size", "bs")))
    return asks, bids


def _book_sides(book: Any) -> tuple[Sequence[tuple[Any, Any]], Sequence[tuple[Any, Any]]]:
    units = _get(book, "orderbook_units", "units")
    if units is not None:
        return _levels_from_units(units)
    asks = _get(book, "asks")
    bids = _get(book, "bids")
    if asks is not None and bids is not None:
        return list(asks), list(bids)
    # Array form: parallel price/size arrays per side (numpy or lists), level 1 first.
    ask_px = _get(book, "ask_price", "ask_px", "ask_prices")
    ask_sz = _get(book, "ask_size", "ask_sz", "ask_sizes")
    bid_px = _get(book, "bid_price", "bid_px", "bid_prices")
    bid_sz = _get(book, "bid_size", "bid_sz", "bid_sizes")
    if ask_px is None or bid_px is None or ask_sz is None or bid_sz is None:
        raise ValueError("order book without levels")
    return list(zip(ask_px, ask_sz, strict=False)), list(zip(bid_px, bid_sz, strict=False))


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


def orderbook_payload(book: Any, *, levels: int = DEFAULT_LEVELS) -> dict[str, Any]:
    if isinstance(book, Mapping):
        book = _normalise_dict(book)
    asks_raw, bids_raw = _book_sides(book)
    asks, ask_depth = _cumulate(asks_raw, levels)
    bids, bid_depth = _cumulate(bids_raw, levels)
    best_ask = asks[0][0] if asks else None
    best_bid = bids[0][0] if bids else None
    spread = _num(best_ask - best_bid) if best_ask is not None and best_bid is not None else None
    mid = _num((best_ask + best_bid) / 2) if best_ask is not None and best_bid is not None else None
    return {
        "market": market_of(book),
        "ts": _int(_get(book, "timestamp", "ts")) or _now_ms(),
        "asks": asks,
        "bids": bids,
        "total_ask_size": _num(_get(book, "total_ask_size", default=ask_depth)),
        "total_bid_size": _num(_get(book, "total_bid_size", default=bid_depth)),
        "spread": spread,
        "mid": mid,
    }


def trade_item(trade: Any) -> dict[str, Any]:
    if isinstance(trade, Mapping):
        trade = _normalise_dict(trade)
    raw_side = _get(trade, "ask_bid", "side", default="")
    if isinstance(raw_side, int | float):  # records: +1 buyer-initiated, -1 seller-initiated
        raw_side = "BID" if raw_side > 0 else "ASK"
    side = str(raw_side).upper()
    if side in ("BUY", "B"):
        side = "BID"
    elif side in ("SELL", "S", "A"):
        side = "ASK"
    return {
        "ts": _int(_get(trade, "trade_timestamp", "timestamp", "ts")) or _now_ms(),
        "price": _num(_get(trade, "trade_price", "price")),
        "volume": _num(_get(trade, "trade_volume", "volume")),
        "side": side,
        "sid": _int(_get(trade, "sequential_id", "sid")),
    }


def trades_payload(market: str, trades: Iterable[Any]) -> dict[str, Any]:
    return {"market": market, "trades": [trade_item(t) for t in trades]}


def ticker_payload(ticker: Any) -> dict[str, Any]:
    if isinstance(ticker, Mapping):
        ticker = _normalise_dict(ticker)
    price = _num(_get(ticker, "trade_price", "price"))
    prev_close = _num(_get(ticker, "prev_closing_price", "prev_close"))
    change_price = _get(ticker, "signed_change_price")
    change_rate = _get(ticker, "signed_change_rate")
    if change_price is None and price is not None and prev_close:
        change_price = price - prev_close
    if change_rate is None and change_price is not None and prev_close:
        change_rate = float(change_price) / float(prev_close)
    change = _get(ticker, "change")
    if change is None and change_price is not None:
        change = "RISE" if change_price > 0 else "FALL" if change_price < 0 else "EVEN"
    return {
        "market": market_of(ticker),
        "ts": _int(_get(ticker, "timestamp", "trade_timestamp", "ts")) or _now_ms(),
        "price": price,
        "open": _num(_get(ticker, "opening_price", "open")),
        "high": _num(_get(ticker, "high_price", "high")),
        "low": _num(_get(ticker, "low_price", "low")),
        "prev_close": prev_close,
        "change": change,
        "change_price": _num(change_price),
        "change_rate": None if change_rate is None else round(float(change_rate), 10),
        "volume_24h": _num(_get(ticker, "acc_trade_volume_24h", "volume_24h")),
        "value_24h": _num(_get(ticker, "acc_trade_price_24h", "value_24h")),
        "acc_volume": _num(_get(ticker, "acc_trade_volume", "acc_volume")),
        "acc_value": _num(_get(ticker, "acc_trade_price", "acc_value")),
    }


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": f"market.{kind}", "data": data}


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
            from django.conf import settings

            if interval is None:
                interval = float(getattr(settings, "MARKET_FANOUT_INTERVAL_MS", 50)) / 1000.0
            if levels is None:
                levels = int(getattr(settings, "MARKET_FANOUT_LEVELS", DEFAULT_LEVELS))
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
                book = orderbook_payload(pending.orderbook, levels=self.levels)
                out.append((group, event("orderbook", book)))
            if pending.trades:
                out.append((group, event("trade", trades_payload(market, pending.trades))))
            if pending.ticker is not None:
                out.append((group, event("ticker", ticker_payload(pending.ticker))))
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
