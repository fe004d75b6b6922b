"""The Upbit simulator's network face: an aiohttp server speaking Upbit's REST and WebSocket protocol.

Start it in a test (background thread, free port)::

    from market.upbit_sim.server import SimConfig, SimulatorThread

    with SimulatorThread(SimConfig(markets=["KRW-BTC"], seed=1)) as sim:
        acct = sim.create_account(krw="1000000")           # {"account_id", "access_key", "secret_key"}
        base = sim.rest_url                                   # "http://127.0.0.1:<port>" (then /v1/...)
        ws = sim.ws_url                                       # "ws://127.0.0.1:<port>/websocket/v1"
        ...

or from the shell: ``manage.py upbit_sim --port 8765 --source synthetic --markets KRW-BTC,KRW-ETH``.

Admin API (not part of Upbit; unauthenticated, bind the simulator to localhost):

* ``POST /_sim/accounts`` body ``{"krw": "1000000", "assets": {"BTC": "0.5"}}`` ->
  ``{"account_id", "access_key", "secret_key"}`` (201). Optional ``"access_key"``/``"secret_key"`` to
  choose them, ``"expired": true`` for an expired key.
* ``POST /_sim/accounts/{account_id}/deposit`` body ``{"currency": "KRW", "amount": "5000"}``.
* ``POST /_sim/drop_websockets`` (``?mode=abort`` default: transport closed without a close frame, like
  Upbit's idle drop; ``?mode=close``: close frame 1001) -> ``{"dropped": n}``.
* ``POST /_sim/pause`` (``{"seconds": 5}`` optional; without it until ``POST /_sim/resume``): the market
  stops (no new books/trades, source time frozen) while sockets stay open.
* ``GET /_sim/state``: markets, source time, connections, paused, the synthetic ``signal_strength``,
  ``requests`` and ``refused`` (429s) per rate-limit group since start.

Upbit protocol facts implemented (see ``shared/upbit-api.md``): quotation REST with JSON numbers and
integer error names; exchange REST with decimal strings, JWT verification in §2.4 order (HS256/HS512,
nonce replay, SHA-512 query hash of the unencoded parameters, percent-encoded variant accepted), string
error names; per-group fixed 1-second rate-limit buckets with ``Remaining-Req`` and plain-text 429
``Too many API requests.``; public WebSocket (binary frames of UTF-8 JSON, ticket/type/codes/format,
``CODE.N`` depth, SNAPSHOT then REALTIME, only-snapshot/only-realtime, DEFAULT/SIMPLE/JSON_LIST/
SIMPLE_LIST, text ``PING`` -> ``{"status":"UP"}`` every 10 s, error frame then close 1000, idle close);
private WebSocket ``myOrder``/``myAsset`` with the Bearer JWT on the upgrade.

Exchange endpoints: ``GET /v1/accounts``, ``GET /v1/orders/chance``, ``POST /v1/orders`` (limit, price,
market, best; ioc/fok/post_only; smp_type), ``POST /v1/orders/test``, ``POST /v1/orders/cancel_and_new``,
``GET /v1/order``, ``DELETE /v1/order``, ``GET /v1/orders/open|closed|uuids``, legacy ``GET /v1/orders``,
``DELETE /v1/orders/uuids``, ``DELETE /v1/orders/open``; an unknown exchange path answers 404 ``not_found``
with the ``default`` group's ``Remaining-Req``. Candles: ``seconds``, ``minutes/{1..240}``, ``days``,
``weeks``, ``months``, ``years``. ``POST /v1/orders`` is limited to 12/s (KR, §3.1). Names Upbit does
not document are marked in
``protocol.ERRORS`` (``duplicate_identifier``, ``order_not_cancelable``). Not simulated: stop (``watch``)
orders, the 418 block after repeated 429s, the ``Origin`` rate-limit group, ``level`` price grouping (a
non-zero level answers ``[]``/no data), WebSocket ``candle.*`` types.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from aiohttp import WSMsgType, web

from market.dayfiles import BookArrays
from market.upbit.protocol import (
    DEFAULT_RATE_LIMITS,
    KRW_TICK_TABLE,
    ORDERBOOK_LEVELS,
    PRIVATE_WS_TYPES,
    PUBLIC_WS_TYPES,
    TOO_MANY_REQUESTS_TEXT,
    WS_ERRORS,
    WS_FORMATS,
    NonceCache,
    UpbitAuthError,
    UpbitError,
    decimal_str,
    error_body,
    format_remaining_req,
    krw_tick_size,
    split_code_depth,
    to_simple,
    verify_jwt,
)

from .engine import AssetEvent, EngineEvent, Execution, MatchingEngine, Order, OrderEvent
from .frames import encode_orderbooks
from .source import BookSnapshot, MarketSource, SequenceIds, TradeTick
from .stats import DAY, MINUTE_UNITS, MarketStats
from .synthetic import SyntheticSource

log = logging.getLogger("market.upbit_sim")

MARKET_NAMES = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("엑스알피(리플)", "XRP"),
    "SOL": ("솔라나", "Solana"),
    "ADA": ("에이다", "Cardano"),
    "DOGE": ("도지코인", "Dogecoin"),
}
MISSING_PARAM = "Missing request parameter error. Check the required parameters!"
INVALID_PARAM = "Invalid parameter. Check the given value!"


@dataclass
class SimConfig:
    """Everything configurable; defaults follow Upbit (§3 rate limits, §7 rules)."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port (read it back from ``SimulatorThread.port``)
    markets: list[str] = field(default_factory=lambda: ["KRW-BTC"])
    source: str = "synthetic"  # synthetic | replay
    seed: int = 1
    speed: float = 1.0  # source seconds per wall second; 0 = unpaced (as fast as possible)
    replay_path: str | None = None
    replay_loop: bool = True
    rebase_time: bool = True  # replay: stream starts at wall-clock now
    tick_ms: int = 50  # publishing period (paced mode)
    rate_limits: dict[str, int] | None = None  # None = Upbit's; {} = no limits; partial dict overrides
    ws_idle_timeout: float = 120.0  # seconds without any client frame before the server drops the socket
    ws_status_interval: float = 10.0  # {"status":"UP"} period after a text PING
    ws_queue_max: int = 20_000  # per-connection backlog before a slow client is dropped (paced mode)
    activity: float | None = None  # synthetic event-rate scale (None: 1, or 20/len(markets) above 20)
    volatility: float | dict[str, float] | None = None  # synthetic target 1-min vol (None: 0.045 %)
    signal_strength: float = 0.0  # synthetic planted order-flow signal (0 = off, 1 = the demo's default)
    unpaced_chunk: int = 2000  # events per market per loop turn when speed == 0 (synthetic)
    backfill: bool = True  # seeded candle history before the start (synthetic)
    json_429: bool = False  # 429 body as a JSON error envelope instead of Upbit's plain text
    fee_rate: Decimal = Decimal("0.0005")
    start_ms: int | None = None  # synthetic source time origin; None = now
    source_obj: MarketSource | None = None  # a ready source (overrides ``source``)
    # Accounts created at start: [{"krw": "1000000", "assets": {...}, "access_key": ..., "secret_key": ...}]
    initial_accounts: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------ helpe


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


# Exchange API paths (JWT, snake_case error names, §4.1); other unknown /v1/ paths answer as quotation.
_EXCHANGE_PREFIXES = (
    "/v1/order/", "/v1/orders", "/v1/accounts", "/v1/deposit", "/v1/withdraw", "/v1/api_keys", "/v1/status/",
)  # fmt: skip


def _quote_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(error_body(status, message), status, headers)


def _exchange_error(err: UpbitError, headers: dict[str, str] | None = None) -> web.Response:
    return _json(err.body(), err.status, headers)


def _parse_time(value: str) -> int | None:
    """Upbit ``to`` values: ISO-8601 with/without zone, space separator, or epoch ms. Naive = UTC."""
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return int(v)
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _ws_frame(payload: bytes) -> bytes:
    """An unmasked, final, binary WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 65536:
        return bytes((0x82, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x82, 127)) + n.to_bytes(8, "big") + payload


class RateLimiter:
    """Fixed one-second buckets per (group, scope)."""

    def __init__(self, limits: dict[str, int], clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock  # tests freeze it to pin a burst into one window
        self._buckets: dict[tuple[str, str], list[int]] = {}
        # Requests and 429s per group since start (tests and benchmarks count e.g. order-book calls).
        self.requests: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()

    def hit(self, group: str, scope: str) -> tuple[bool, int]:
        self.requests[group] += 1
        limit = self.limits.get(group)
        if limit is None:
            return True, 999
        sec = int(self.clock())
        b = self._buckets.get((group, scope))
        if b is None or b[0] != sec:
            b = self._buckets[(group, scope)] = [sec, 0]
            if len(self._buckets) > 10_000:
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] == sec}
                self._buckets[(group, scope)] = b
        if b[1] >= limit:
            self.refused[group] += 1
            return False, 0
        b[1] += 1
        return True, limit - b[1]

    def reset(self) -> None:
        """Empty every bucket (tests sharing one simulator start each case with a fresh second)."""
        self._buckets.clear()


@dataclass
class ApiKey:
    access_key: str
    secret_key: str
    account_id: str
    expired: bool = False


@dataclass
class Subscription:
    type: str
    codes: dict[str, int]  # code -> depth (orderbook)
    only_snapshot: bool = False
    only_realtime: bool = False
    level: float = 0


class WsConn:
    """One WebSocket connection: subscriptions and an outgoing queue drained by a sender task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, private_account: str | None) -> None:
        self.ws = ws
        self.transport = request.transport
        self.account_id = private_account
        self.subs: list[Subscription] = []
        self.fmt = "DEFAULT"
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.last_seen = time.monotonic()
        self.status_task: asyncio.Task[None] | None = None
        self.closed = False

    def by_type(self, typ: str) -> Subscription | None:
        for s in self.subs:
            if s.type == typ:
                return s
        return None


# ------------------------------------------------------------------------------------------------------ simul


class Simulator:
    """State + aiohttp application. Everything runs on one event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        limits = dict(DEFAULT_RATE_LIMITS)
        if config.rate_limits is not None:
            limits = {} if not config.rate_limits else {**limits, **config.rate_limits}
        self.limiter = RateLimiter(limits)
        self.source = config.source_obj or self._make_source()
        self.markets = list(self.source.markets)
        self.engine = MatchingEngine(
            self.markets, fee_rate=config.fee_rate, tick_table=KRW_TICK_TABLE, clock=self.now_ms
        )
        self.engine.liquidity_taken = self.source.consume
        self.engine.listeners.append(self._on_engine_event)
        self.stats = {m: MarketStats(m) for m in self.markets}
        self.books: dict[str, BookSnapshot] = {}
        self.ids = SequenceIds()
        self.keys: dict[str, ApiKey] = {}
        self.nonces = NonceCache()
        self.conns: set[WsConn] = set()
        self._src_origin = self.source.start_ms()
        self._wall_origin = time.time()
        self._paused_at: float | None = None
        self._pause_until: float | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._pending_trades: list[tuple[str, TradeTick]] = []
        self.published_books = 0
        if config.backfill and config.source == "synthetic" and config.source_obj is None:
            for m in self.markets:
                model = getattr(self.source, "models", {}).get(m)
                if model is not None:
                    # History ends at the price the ticker is seeded with (the first book's best bid).
                    self.stats[m].backfill(
                        end_ms=self._src_origin,
                        price=model.book().bids[0][0],
                        seed=config.seed,
                        minute_vol=model.params.target_vol,
                    )
        self.step(self._src_origin)  # initial books/prices before the first client arrives
        for spec in config.initial_accounts:
            self.account_create(**spec)
        self.app = self._make_app()

    def _make_source(self) -> MarketSource:
        c = self.config
        record_all = c.speed == 0
        if c.source == "synthetic":
            from .synthetic import SyntheticSource

            start = c.start_ms if c.start_ms is not None else int(time.time() * 1000)
            return SyntheticSource(
                c.markets,
                seed=c.seed,
                start_ms=start,
                record_all=record_all,
                activity=c.activity,
                volatility=c.volatility,
                signal_strength=c.signal_strength,
            )
        if c.source == "replay":
            from .replay import ReplaySource

            if not c.replay_path:
                raise ValueError("replay needs replay_path")
            start = int(time.time() * 1000) if c.rebase_time else None
            return ReplaySource.from_path(
                c.replay_path, c.markets or None, start_ms=start, loop=c.replay_loop, record_all=record_all
            )
        raise ValueError(f"unknown source {c.source!r}")

    # -------------------------------------------------------------------------------------------- clock

    def now_ms(self) -> int:
        """Source time now (what every timestamp on the wire uses)."""
        wall = self._paused_at if self._paused_at is not None else time.time()
        if self.config.speed == 0:
            return self._unpaced_now
        return self._src_origin + int((wall - self._wall_origin) * 1000 * self.config.speed)

    _unpaced_now: int = 0

    def pause(self, seconds: float | None = None) -> None:
        if self._paused_at is None:
            self._paused_at = time.time()
        self._pause_until = time.time() + seconds if seconds else None

    def resume(self) -> None:
        if self._paused_at is not None:
            self._wall_origin += time.time() - self._paused_at
            self._paused_at = None
        self._pause_until = None

    # -------------------------------------------------------------------------------------------- feed

    async def _feed(self) -> None:
        c = self.config
        self._unpaced_now = self._src_origin
        try:
            while True:
                if self._paused_at is not None:
                    if self._pause_until is not None and time.time() >= self._pause_until:
                        self.resume()
                    else:
                        await asyncio.sleep(0.02)
                        continue
                if c.speed == 0:
                    if isinstance(self.source, SyntheticSource):
                        # Nobody subscribed: a trickle (REST still sees a moving market) instead of a core.
                        self.step_unpaced(c.unpaced_chunk if self.conns else 20)
                    else:
                        self._unpaced_now += 1000
                        self.step(self._unpaced_now)
                    # Unpaced = as fast as the slowest subscriber reads (back-pressure, never a drop).
                    await asyncio.sleep(0 if self.conns else 0.1)
                    while any(q.queue.qsize() > 2 * c.unpaced_chunk for q in self.conns):
                        await asyncio.sleep(0.001)
                else:
                    self.step(self.now_ms())
                    await asyncio.sleep(c.tick_ms / 1000)
        except asyncio.CancelledError:
            raise
        except Exception:  # a feed crash must be loud, not silent
            log.exception("simulator feed crashed")
            raise

    def step(self, until_ms: int) -> None:
        """Advance the source to ``until_ms`` and publish what happened (also usable directly in tests)."""
        updates = self.source.advance(until_ms)
        for m, upd in updates.items():
            st = self.stats[m]
            for t in upd.trades:
                self.engine.on_trade(m, t.price, t.volume, t.ask_bid, t.ts)
                self._publish_trade(m, t)
            for book in upd.books:
                if not st.started and book.bids and book.bids[0][0] > 0:
                    st.seed_price(book.bids[0][0], book.ts)
                self.engine.on_book(m, book.asks, book.bids, book.ts)
                self._publish_book(m, book)
        self._flush_user_trades()

    def step_unpaced(self, events: int) -> None:
        """Unpaced synthetic fast path: ``events`` model events per market, every book published, frames
        encoded from numpy arrays in one go (``frames.encode_orderbooks``)."""
        assert isinstance(self.source, SyntheticSource)
        for m, model in self.source.models.items():
            books, trades = model.generate(events)
            n = len(books)
            if n == 0:
                continue
            last = n - 1

            def snap(i: int, b: BookArrays = books) -> BookSnapshot:
                return BookSnapshot(
                    int(b.ts[i]),
                    list(zip(b.ask_px[i].tolist(), b.ask_sz[i].tolist(), strict=True)),
                    list(zip(b.bid_px[i].tolist(), b.bid_sz[i].tolist(), strict=True)),
                )

            if len(trades):
                rows = np.searchsorted(books.ts, trades.ts, side="right") - 1
                for j in range(len(trades)):
                    r = max(0, int(rows[j]))
                    t = TradeTick(
                        int(trades.ts[j]), float(trades.price[j]), float(trades.volume[j]),
                        "BID" if trades.side[j] > 0 else "ASK", 0,
                        float(books.ask_px[r, 0]), float(books.ask_sz[r, 0]),
                        float(books.bid_px[r, 0]), float(books.bid_sz[r, 0]),
                    )  # fmt: skip
                    self.engine.on_trade(m, t.price, t.volume, t.ask_bid, t.ts)
                    self._publish_trade(m, t)
            final = snap(last)
            self.books[m] = final
            self.engine.on_book(m, final.asks, final.bids, final.ts)
            self.published_books += n
            self._unpaced_now = max(self._unpaced_now, final.ts)
            groups: dict[tuple[int, str], list[WsConn]] = {}
            for conn in self.conns:
                sub = conn.by_type("orderbook")
                if sub is None or sub.only_snapshot or sub.level or m not in sub.codes:
                    continue
                groups.setdefault((sub.codes[m], conn.fmt), []).append(conn)
            for (depth, fmt), conns in groups.items():
                frames = encode_orderbooks(m, books, depth=depth, fmt=fmt)
                for conn in conns:
                    for f in frames:
                        self._send(conn, f)
        self._flush_user_trades()

    def _publish_trade(self, m: str, t: TradeTick) -> None:
        t = TradeTick(
            t.ts, t.price, t.volume, t.ask_bid, self.ids.next(m, t.ts),
            t.best_ask_price, t.best_ask_size, t.best_bid_price, t.best_bid_size,
        )  # fmt: skip
        st = self.stats[m]
        st.add_trade(t)
        if not self.conns:
            return
        cache: dict[tuple[str, str], bytes] = {}
        now = t.ts
        for conn in list(self.conns):
            for typ in ("trade", "ticker"):
                sub = conn.by_type(typ)
                if sub is None or sub.only_snapshot or m not in sub.codes:
                    continue
                key = (typ, conn.fmt)
                data = cache.get(key)
                if data is None:
                    msg = st.trade_ws(t, "REALTIME") if typ == "trade" else st.ticker_ws(now, "REALTIME")
                    data = cache[key] = self._encode(msg, conn.fmt)
                self._send(conn, data)

    def _publish_book(self, m: str, book: BookSnapshot) -> None:
        self.books[m] = book
        self.published_books += 1
        if not self.conns:
            return
        cache: dict[tuple[int, str], bytes] = {}
        msg_book: BookSnapshot | None = None
        for conn in list(self.conns):
            sub = conn.by_type("orderbook")
            if sub is None or sub.only_snapshot or sub.level or m not in sub.codes:
                continue
            depth = sub.codes[m]
            key = (depth, conn.fmt)
            data = cache.get(key)
            if data is None:
                if msg_book is None:
                    msg_book = self._public_book(m, book)
                data = cache[key] = self._encode(
                    self._orderbook_msg(m, msg_book, depth, "REALTIME"), conn.fmt
                )
            self._send(conn, data)

    def _public_book(self, m: str, book: BookSnapshot) -> BookSnapshot:
        """The source book merged with resting user orders / less liquidity users took."""
        eng = self.engine
        if not eng._resting[m]["bid"] and not eng._resting[m]["ask"] and not eng._books[m].consumed:
            return book
        asks, bids, ts = eng.book_levels(m)
        return BookSnapshot(book.ts, asks, bids)

    def _orderbook_msg(
        self, m: str, book: BookSnapshot, depth: int, stream_type: str | None
    ) -> dict[str, Any]:
        units = []
        tas = tbs = 0.0
        asks, bids = book.asks, book.bids
        for i in range(depth):
            ap, asz = asks[i] if i < len(asks) else (0.0, 0.0)
            bp, bsz = bids[i] if i < len(bids) else (0.0, 0.0)
            tas += asz
            tbs += bsz
            units.append({"ask_price": ap, "bid_price": bp, "ask_size": asz, "bid_size": bsz})
        msg: dict[str, Any] = {
            "type": "orderbook",
            "code": m,
            "timestamp": book.ts,
            "total_ask_size": round(tas, 8),
            "total_bid_size": round(tbs, 8),
            "orderbook_units": units,
            "level": 0,
        }
        if stream_type is None:  # REST shape
            msg.pop("type")
            msg["market"] = msg.pop("code")
            return {"market": m, **{k: v for k, v in msg.items() if k != "market"}}
        msg["stream_type"] = stream_type
        return msg

    @staticmethod
    def _encode(msg: dict[str, Any], fmt: str) -> bytes:
        if fmt in ("SIMPLE", "SIMPLE_LIST"):
            msg = to_simple(msg)
        if fmt.endswith("_LIST"):
            return orjson.dumps([msg])
        return orjson.dumps(msg)

    def _send(self, conn: WsConn, data: bytes) -> None:
        if conn.closed:
            return
        if conn.queue.qsize() >= self.config.ws_queue_max and self.config.speed != 0:
            log.warning("dropping a slow WebSocket client (backlog %d)", conn.queue.qsize())
            self._drop(conn, abort=True)
            return
        conn.queue.put_nowait(data)

    # -------------------------------------------------------------------------------------------- engine even

    def _on_engine_event(self, ev: EngineEvent) -> None:
        if isinstance(ev, Execution):
            self._pending_trades.append((ev.market, TradeTick(ev.ts, ev.price, ev.volume, ev.ask_bid, 0)))
            return
        if not self.conns:
            return
        for conn in list(self.conns):
            if conn.account_id != ev.account_id:
                continue
            if isinstance(ev, OrderEvent):
                sub = conn.by_type("myOrder")
                if sub is None or (sub.codes and ev.order.market not in sub.codes):
                    continue
                self._send(conn, self._encode(self._my_order_msg(ev), conn.fmt))
            elif isinstance(ev, AssetEvent):
                if conn.by_type("myAsset") is None:
                    continue
                self._send(conn, self._encode(self._my_asset_msg(ev), conn.fmt))

    def _flush_user_trades(self) -> None:
        """Public trades made by user taker orders (published after the engine call returns)."""
        pending, self._pending_trades = self._pending_trades, []
        for m, t in pending:
            book = self.books.get(m)
            if book is not None and book.asks and book.bids:
                t = TradeTick(t.ts, t.price, t.volume, t.ask_bid, 0, *book.asks[0], *book.bids[0])
            self._publish_trade(m, t)

    def _my_order_msg(self, ev: OrderEvent) -> dict[str, Any]:
        o: Order = ev.order
        f = ev.fill
        price = f.price if f else o.price
        volume = f.volume if f else o.volume
        return {
            "type": "myOrder",
            "code": o.market,
            "uuid": o.uuid,
            "ask_bid": o.side.upper(),
            "order_type": o.ord_type,
            "state": ev.state,
            "trade_uuid": f.uuid if f else None,
            "price": float(price) if price is not None else None,
            "avg_price": float(o.avg_price),
            "volume": float(volume) if volume is not None else None,
            "remaining_volume": float(o.remaining_volume) if o.remaining_volume is not None else None,
            "executed_volume": float(o.executed_volume),
            "trades_count": len(o.trades),
            "reserved_fee": float(o.reserved_fee),
            "remaining_fee": float(o.remaining_fee),
            "paid_fee": float(o.paid_fee),
            "locked": float(o.locked),
            "executed_funds": float(o.executed_funds),
            "time_in_force": o.time_in_force,
            "trade_fee": float(f.fee) if f else None,
            "is_maker": f.is_maker if f else None,
            "identifier": o.identifier,
            "smp_type": o.smp_type,
            "prevented_volume": float(o.prevented_volume),
            "prevented_locked": float(o.prevented_locked),
            "trade_timestamp": f.ts if f else None,
            "order_timestamp": o.created_ms,
            "timestamp": ev.ts,
            "stream_type": "REALTIME",
        }

    def _my_asset_msg(self, ev: AssetEvent) -> dict[str, Any]:
        acc = self.engine.accounts[ev.account_id]
        assets = []
        for cur in ev.currencies:
            b = acc.balances.get(cur)
            if b is not None:
                assets.append({"currency": cur, "balance": float(b.balance), "locked": float(b.locked)})
        return {
            "type": "myAsset",
            "asset_uuid": ev.account_id,
            "assets": assets,
            "asset_timestamp": ev.ts,
            "timestamp": ev.ts,
            "stream_type": "REALTIME",
        }

    # -------------------------------------------------------------------------------------------- accounts

    def account_create(
        self,
        *,
        krw: Decimal | str | int = 0,
        assets: dict[str, Any] | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        expired: bool = False,
    ) -> dict[str, str]:
        acc = self.engine.account_create(krw=Decimal(str(krw)), assets=assets)
        access = access_key or secrets.token_urlsafe(30)
        secret = secret_key or secrets.token_urlsafe(30)
        if access in self.keys:
            raise ValueError("access key already exists")
        self.keys[access] = ApiKey(access, secret, acc.account_id, expired)
        return {"account_id": acc.account_id, "access_key": access, "secret_key": secret}

    def _secret_for(self, access_key: str) -> str | None:
        k = self.keys.get(access_key)
        if k is None:
            return None
        if k.expired:
            raise UpbitAuthError("expired_access_key")
        return k.secret_key

    # -------------------------------------------------------------------------------------------- http app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """No request ever gets a bare 500 page: unknown paths get Upbit-style 404s, bugs a JSON 500."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            exchange = request.path == "/v1/order" or request.path.startswith(_EXCHANGE_PREFIXES)
            if exc.status >= 400 and exchange:
                # The exchange API's envelope: a snake_case name, counted in the exchange ``default`` group.
                _, hdr = self._limit(request, "default")
                name = "not_found" if exc.status == 404 else exc.reason.lower().replace(" ", "_")
                return _json(error_body(name, exc.reason), exc.status, hdr)
            if exc.status >= 400 and request.path.startswith("/v1/"):
                return _json(error_body(exc.status, exc.reason), exc.status)
            raise
        except Exception:
            log.exception("simulator request failed: %s %s", request.method, request.path)
            return _json(error_body("server_error", "internal simulator error"), 500)

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[self._errors])
        r = app.router
        r.add_get("/v1/market/all", self.h_market_all)
        r.add_get("/v1/ticker", self.h_ticker)
        r.add_get("/v1/ticker/all", self.h_ticker_all)
        r.add_get("/v1/orderbook", self.h_orderbook)
        r.add_get("/v1/orderbook/instruments", self.h_instruments)
        r.add_get("/v1/orderbook/supported_levels", self.h_supported_levels)
        r.add_get("/v1/trades/ticks", self.h_trades)
        r.add_get("/v1/candles/minutes/{unit}", self.h_candles)
        r.add_get("/v1/candles/{unit:seconds|days|weeks|months|years}", self.h_candles)
        r.add_get("/v1/accounts", self.h_accounts)
        r.add_get("/v1/orders/chance", self.h_chance)
        r.add_post("/v1/orders", self.h_order_create)
        r.add_post("/v1/orders/test", self.h_order_test)
        r.add_post("/v1/orders/cancel_and_new", self.h_cancel_and_new)
        r.add_get("/v1/order", self.h_order_get)
        r.add_delete("/v1/order", self.h_order_cancel)
        r.add_get("/v1/orders/open", self.h_orders_open)
        r.add_get("/v1/orders/closed", self.h_orders_closed)
        r.add_get("/v1/orders/uuids", self.h_orders_uuids)
        r.add_get("/v1/orders", self.h_orders_legacy)
        r.add_delete("/v1/orders/uuids", self.h_cancel_uuids)
        r.add_delete("/v1/orders/open", self.h_cancel_open)
        r.add_get("/websocket/v1", self.h_ws_public)
        r.add_get("/websocket/v1/private", self.h_ws_private)
        r.add_post("/_sim/accounts", self.h_sim_account)
        r.add_post("/_sim/accounts/{account_id}/deposit", self.h_sim_deposit)
        r.add_post("/_sim/drop_websockets", self.h_sim_drop)
        r.add_post("/_sim/pause", self.h_sim_pause)
        r.add_post("/_sim/resume", self.h_sim_resume)
        r.add_get("/_sim/state", self.h_sim_state)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._wall_origin = time.time()
        loop = asyncio.get_running_loop()
        self._feed_task = loop.create_task(self._feed())
        self._idle_task = loop.create_task(self._idle_watch())

    async def _on_shutdown(self, app: web.Application) -> None:
        for task in (self._feed_task, self._idle_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for conn in list(self.conns):
            self._drop(conn, abort=True)

    # -------------------------------------------------------------------------------------------- quotation

    def _limit(
        self, request: web.Request, group: str, scope: str | None = None
    ) -> tuple[bool, dict[str, str]]:
        ok, left = self.limiter.hit(group, scope or request.remote or "?")
        return ok, {"Remaining-Req": format_remaining_req(group, left)}

    def _too_many(self, headers: dict[str, str]) -> web.Response:
        if self.config.json_429:
            return _json(error_body("too_many_requests", TOO_MANY_REQUESTS_TEXT), 429, headers)
        return web.Response(status=429, text=TOO_MANY_REQUESTS_TEXT, headers=headers)

    def _codes(self, request: web.Request, name: str = "markets") -> list[str] | None:
        # Comma-separated, and repeated keys too (``markets=A&markets=B``, as pyupbit sends lists).
        raws = request.query.getall(name, [])
        codes = [c.strip().upper() for raw in raws for c in raw.split(",") if c.strip()]
        return codes or None

    async def h_market_all(self, request: web.Request) -> web.Response:
        ok, hdr = self._limit(request, "market")
        if not ok:
            return self._too_many(hdr)
        details = (request.query.get("is_details") or request.query.get("isDetails") or "").lower() == "true"
        out = []
        for m in self.markets:
            base = m.split("-", 1)[1]
            ko, en = MARKET_NAMES.get(base, (base, base))
            row: dict[str, Any] = {"market": m, "korean_name": ko, "english_name": en}
            if details:
                row["market_warning"] = "NONE"
                row["market_event"] = {
                    "warning": False,
                    "caution": dict.fromkeys(
                        (
                            "PRICE_FLUCTUATIONS",
                            "TRADING_VOLUME_SOARING",
                            "DEPOSIT_AMOUNT_SOARING",
                            "PRICE_DIFFERENCES",
                            "CONCENTRATION_OF_SMALL_ACCOUNTS",
                        ),  # fmt: skip
                        False,
                    ),
                }
            out.append(row)
        return _json(out, headers=hdr)

    def _known(self, codes: list[str]) -> bool:
        return all(c in self.stats for c in codes)

    def _quote_codes(
        self, request: web.Request, group: str, *, require_known: bool = True
    ) -> tuple[list[str], dict[str, str]] | web.Response:
        """The prelude of the per-market quotation endpoints: rate limit, ``markets`` present, codes known."""
        ok, hdr = self._limit(request, group)
        if not ok:
            return self._too_many(hdr)
        codes = self._codes(request)
        if codes is None:
            return _quote_error(400, MISSING_PARAM, hdr)
        if require_known and not self._known(codes):
            return _quote_error(404, "Code not found", hdr)
        return codes, hdr

    async def h_ticker(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "ticker")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        now = self.now_ms()
        return _json([self.stats[c].ticker_rest(now) for c in codes if self.stats[c].started], headers=hdr)

    async def h_ticker_all(self, request: web.Request) -> web.Response:
        ok, hdr = self._limit(request, "ticker")
        if not ok:
            return self._too_many(hdr)
        quotes = self._codes(request, "quote_currencies")
        if quotes is None:
            return _quote_error(400, MISSING_PARAM, hdr)
        now = self.now_ms()
        out = [
            st.ticker_rest(now) for m, st in self.stats.items() if m.split("-", 1)[0] in quotes and st.started
        ]
        return _json(out, headers=hdr)

    async def h_orderbook(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        level = request.query.get("level", "0").strip() or "0"
        try:
            if float(level) != 0:
                return _json([], headers=hdr)
        except ValueError:
            return _quote_error(400, INVALID_PARAM, hdr)
        try:
            count = int(request.query.get("count", ORDERBOOK_LEVELS))
        except ValueError:
            count = ORDERBOOK_LEVELS
        if not 1 <= count <= ORDERBOOK_LEVELS:
            count = ORDERBOOK_LEVELS
        out = []
        for c in codes:
            book = self.books.get(c)
            if book is None:
                continue
            out.append(self._orderbook_msg(c, self._public_book(c, book), count, None))
        return _json(out, headers=hdr)

    async def h_instruments(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        out = []
        for c in codes:
            price = self.stats[c].trade_price
            book = self.books.get(c)
            if book is not None and book.bids and book.bids[0][0] > 0:
                price = book.bids[0][0]
            tick = krw_tick_size(Decimal(repr(price or 1)), KRW_TICK_TABLE)
            out.append(
                {
                    "market": c,
                    "quote_currency": c.split("-", 1)[0],
                    "tick_size": decimal_str(tick),
                    "supported_levels": ["0"],
                }
            )
        return _json(out, headers=hdr)

    async def h_supported_levels(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook", require_known=False)
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        return _json([{"market": c, "supported_levels": [0]} for c in codes if c in self.stats], headers=hdr)

    async def h_trades(self, request: web.Request) -> web.Response:
        ok, hdr = self._limit(request, "trade")
        if not ok:
            return self._too_many(hdr)
        q = request.query
        market = (q.get("market") or "").strip().upper()
        if not market:
            return _quote_error(400, MISSING_PARAM, hdr)
        if market not in self.stats:
            return _quote_error(404, "Code not found", hdr)
        try:
            count = max(1, min(500, int(q.get("count", "1"))))
            cursor = int(q["cursor"]) if q.get("cursor") else None
            days_ago = int(q["days_ago"]) if q.get("days_ago") else 0
        except ValueError:
            return _quote_error(400, INVALID_PARAM, hdr)
        if not 0 <= days_ago <= 7:
            return _quote_error(400, INVALID_PARAM, hdr)
        now = self.now_ms()
        day_start = now - now % DAY - days_ago * DAY
        to_ms = None
        if q.get("to"):
            raw = q["to"].replace(":", "")
            bad = len(raw) != 6 or not raw.isdigit()
            if bad or int(raw[:2]) > 23 or int(raw[2:4]) > 59 or int(raw[4:]) > 59:
                return _quote_error(400, INVALID_PARAM, hdr)
            to_ms = day_start + (int(raw[:2]) * 3600 + int(raw[2:4]) * 60 + int(raw[4:])) * 1000
        rows = self.stats[market].recent_trades(
            count=count, to_ms=to_ms, cursor=cursor, day_start=day_start if (days_ago or to_ms) else None
        )
        return _json(rows, headers=hdr)

    async def h_candles(self, request: web.Request) -> web.Response:
        ok, hdr = self._limit(request, "candles")
        if not ok:
            return self._too_many(hdr)
        unit = request.match_info["unit"]
        if request.path.startswith("/v1/candles/minutes/") and (
            not unit.isdigit() or int(unit) not in MINUTE_UNITS
        ):
            return _quote_error(400, "specified unit is not valid.", hdr)
        q = request.query
        market = (q.get("market") or "").strip().upper()
        if not market:
            return _quote_error(400, MISSING_PARAM, hdr)
        if market not in self.stats:
            return _quote_error(404, "Code not found", hdr)
        try:
            count = max(1, min(200, int(q.get("count", "1"))))
        except ValueError:
            return _quote_error(400, INVALID_PARAM, hdr)
        to_ms = None
        if q.get("to"):
            to_ms = _parse_time(q["to"])
            if to_ms is None:
                return _quote_error(400, INVALID_PARAM, hdr)
        return _json(self.stats[market].candles(unit, count=count, to_ms=to_ms), headers=hdr)

    # -------------------------------------------------------------------------------------------- exchange

    async def _params(self, request: web.Request) -> list[tuple[str, Any]]:
        """Request parameters in received order: the query string, else the body (JSON object or form)."""
        pairs: list[tuple[str, Any]] = list(request.query.items())
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                text = raw.decode("utf-8")
                if text.lstrip().startswith("{"):
                    body = json.loads(text)
                    if not isinstance(body, dict):
                        raise UpbitError("validation_error", "body must be a JSON object")
                    for k, v in body.items():
                        if v is None:
                            continue
                        if isinstance(v, list):
                            key = k if k.endswith("[]") else f"{k}[]"
                            pairs.extend((key, x) for x in v)
                        else:
                            pairs.append((k, v))
                elif text.lstrip().startswith("["):
                    raise UpbitError("validation_error", "body must be a JSON object")
                elif not pairs:
                    pairs = parse_qsl(text, keep_blank_values=True)
        return pairs

    async def _auth(
        self, request: web.Request, group: str
    ) -> tuple[ApiKey, list[tuple[str, Any]], dict[str, str]]:
        """Verify the JWT (§2.4) and the rate limit; raise _Reject with the response."""
        try:
            params = await self._params(request)
        except (ValueError, UnicodeDecodeError) as exc:
            ok, hdr = self._limit(request, group)
            raise _Reject(
                _exchange_error(UpbitError("validation_error", "malformed request body"), hdr)
            ) from exc
        except UpbitError as exc:
            ok, hdr = self._limit(request, group)
            raise _Reject(_exchange_error(exc, hdr)) from exc
        try:
            claims = verify_jwt(
                request.headers.get("Authorization"),
                secret_for=self._secret_for,
                params=params,
                nonce_check=self.nonces.check,
            )
        except UpbitAuthError as exc:
            ok, hdr = self._limit(request, group)
            raise _Reject(_exchange_error(exc, hdr)) from exc
        key = self.keys[claims["access_key"]]
        ok, hdr = self._limit(request, group, "key:" + key.account_id)
        if not ok:
            raise _Reject(self._too_many(hdr))
        return key, params, hdr

    async def _exchange(
        self,
        request: web.Request,
        group: str,
        fn: Callable[[ApiKey, dict[str, Any], list[tuple[str, Any]]], Any],
        status: int = 200,
    ) -> web.Response:
        try:
            key, params, hdr = await self._auth(request, group)
        except _Reject as r:
            return r.response
        single: dict[str, Any] = {}
        for k, v in params:
            single.setdefault(k, v)
        try:
            result = fn(key, single, params)
        except UpbitError as exc:
            return _exchange_error(exc, hdr)
        except (ValueError, TypeError, ArithmeticError) as exc:  # malformed parameter values
            return _exchange_error(UpbitError("validation_error", f"invalid parameter: {exc}"), hdr)
        finally:
            self._flush_user_trades()
        return _json(result, status, hdr)

    async def h_accounts(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request, "default", lambda k, p, _: self.engine.accounts_wire(k.account_id)
        )

    async def h_chance(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            market = str(p.get("market") or "")
            if not market:
                raise UpbitError("validation_error", "market is missing")
            return self.engine.chance_wire(k.account_id, market)

        return await self._exchange(request, "default", fn)

    async def h_order_create(self, request: web.Request) -> web.Response:
        return await self._order_create(request, dry_run=False)

    async def h_order_test(self, request: web.Request) -> web.Response:
        """Validates like ``POST /v1/orders`` and answers with the order it would create; places nothing."""
        return await self._order_create(request, dry_run=True)

    async def _order_create(self, request: web.Request, *, dry_run: bool) -> web.Response:
        group = "order-test" if dry_run else "order"
        if "form" in request.headers.get("Content-Type", ""):
            ok, hdr = self._limit(request, group)
            return _exchange_error(UpbitError("validation_error", "application/json body is required"), hdr)

        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            order = self.engine.order_create(
                dry_run=dry_run,
                account_id=k.account_id,
                market=str(p["market"]).upper() if p.get("market") else None,
                side=p.get("side"),
                ord_type=p.get("ord_type"),
                price=p.get("price"),
                volume=p.get("volume"),
                time_in_force=p.get("time_in_force") or None,
                identifier=p.get("identifier"),
                smp_type=p.get("smp_type") or None,
            )
            return order.wire()

        return await self._exchange(request, group, fn, status=201)

    async def h_cancel_and_new(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            return self.engine.order_cancel_and_new(
                account_id=k.account_id,
                prev_uuid=p.get("prev_order_uuid"),
                prev_identifier=p.get("prev_order_identifier"),
                new_ord_type=p.get("new_ord_type"),
                new_volume=p.get("new_volume"),
                new_price=p.get("new_price"),
                new_identifier=p.get("new_identifier"),
                new_time_in_force=p.get("new_time_in_force") or None,
                new_smp_type=p.get("new_smp_type") or None,
            )

        return await self._exchange(request, "order", fn, status=201)

    def _one(self, p: dict[str, Any]) -> dict[str, str | None]:
        return {"uuid": p.get("uuid"), "identifier": p.get("identifier")}

    async def h_order_get(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request,
            "default",
            lambda k, p, _: self.engine.order_get(account_id=k.account_id, **self._one(p)).wire(
                with_trades=True
            ),
        )

    async def h_order_cancel(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request,
            "default",
            lambda k, p, _: self.engine.order_cancel(account_id=k.account_id, **self._one(p)),
        )

    @staticmethod
    def _multi(params: list[tuple[str, Any]], name: str) -> list[str]:
        return [str(v) for k, v in params if k == name or k == name + "[]"]

    def _list_args(
        self, p: dict[str, Any], params: list[tuple[str, Any]], default_states: tuple[str, ...]
    ) -> dict[str, Any]:
        states = self._multi(params, "states") or ([p["state"]] if p.get("state") else list(default_states))
        for s in states:
            if s not in ("wait", "watch", "done", "cancel"):
                raise UpbitError("validation_error", "state does not have a valid value")
        order_by = str(p.get("order_by") or "desc")
        if order_by not in ("asc", "desc"):
            raise UpbitError("validation_error", "order_by does not have a valid value")
        try:
            page = max(1, int(p.get("page") or 1))
            limit = int(p.get("limit") or 100)
        except ValueError:
            raise UpbitError("validation_error", "page/limit must be integers") from None
        return {"states": states, "order_by": order_by, "page": page, "limit": max(1, limit)}

    async def h_orders_open(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            a = self._list_args(p, params, ("wait",))
            if any(s not in ("wait", "watch") for s in a["states"]):
                raise UpbitError("validation_error", "open orders take state wait or watch")
            a["limit"] = min(100, a["limit"])
            orders = self.engine.orders_list(account_id=k.account_id, market=p.get("market"), **a)
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_closed(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            a = self._list_args(p, params, ("done", "cancel"))
            if any(s not in ("done", "cancel") for s in a["states"]):
                raise UpbitError("validation_error", "closed orders take state done or cancel")
            a["limit"] = min(1000, a["limit"])
            end = _parse_time(str(p["end_time"])) if p.get("end_time") else None
            start = _parse_time(str(p["start_time"])) if p.get("start_time") else None
            if (p.get("end_time") and end is None) or (p.get("start_time") and start is None):
                raise UpbitError("validation_error", "start_time/end_time are not valid")
            if start is None and end is None:
                end = self.now_ms()
            if start is None:
                start = (end or self.now_ms()) - 7 * DAY
            if end is None:
                end = start + 7 * DAY
            if end - start > 7 * DAY:
                raise UpbitError("validation_error", "the window must be 7 days or less")
            orders = self.engine.orders_list(
                account_id=k.account_id, market=p.get("market"), start_ms=start, end_ms=end, **a
            )
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_uuids(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            uuids, idents = self._multi(params, "uuids"), self._multi(params, "identifiers")
            if bool(uuids) == bool(idents):
                raise UpbitError("validation_error", "uuids[] or identifiers[] (one of them) is required")
            if len(uuids) > 100 or len(idents) > 100:
                raise UpbitError("validation_error", "at most 100 ids")
            orders = self.engine.orders_list(
                account_id=k.account_id, market=p.get("market"), states=(), uuids=uuids or None,
                identifiers=idents or None, order_by=str(p.get("order_by") or "desc"), limit=100,
            )  # fmt: skip
            if idents and not uuids and not orders:
                return []
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_legacy(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            a = self._list_args(p, params, ("wait",))
            open_ = [s for s in a["states"] if s in ("wait", "watch")]
            if open_ and len(open_) != len(a["states"]):
                raise UpbitError("validation_error", "open and closed states cannot be mixed")
            a["limit"] = min(100, a["limit"])
            uuids, idents = self._multi(params, "uuids"), self._multi(params, "identifiers")
            orders = self.engine.orders_list(
                account_id=k.account_id,
                market=p.get("market"),
                uuids=uuids or None,
                identifiers=idents or None,
                **a,
            )
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    def _batch_cancel(self, account_id: str, orders: list[Order]) -> dict[str, Any]:
        ok, failed = [], []
        for o in orders:
            try:
                snap = self.engine.order_cancel(account_id=account_id, uuid=o.uuid)
                ok.append({"uuid": snap["uuid"], "market": snap["market"], "identifier": o.identifier})
            except UpbitError:
                failed.append({"uuid": o.uuid, "market": o.market, "identifier": o.identifier})
        return {
            "success": {"count": len(ok), "orders": ok},
            "failed": {"count": len(failed), "orders": failed},
        }

    async def h_cancel_uuids(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            uuids, idents = self._multi(params, "uuids"), self._multi(params, "identifiers")
            if bool(uuids) == bool(idents):
                raise UpbitError("validation_error", "uuids[] or identifiers[] (one of them) is required")
            if len(uuids) > 20 or len(idents) > 20:
                raise UpbitError("validation_error", "at most 20 ids")
            orders = self.engine.orders_list(
                account_id=k.account_id, states=(), uuids=uuids or None, identifiers=idents or None, limit=100
            )
            return self._batch_cancel(k.account_id, orders)

        return await self._exchange(request, "default", fn)

    async def h_cancel_open(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: list[tuple[str, Any]]) -> Any:
            side = str(p.get("cancel_side") or "all")
            if side not in ("all", "ask", "bid"):
                raise UpbitError("validation_error", "cancel_side does not have a valid value")
            pairs = [x for x in str(p.get("pairs") or "").split(",") if x]
            quotes = [x for x in str(p.get("quote_currencies") or "").split(",") if x]
            if pairs and quotes:
                raise UpbitError("validation_error", "pairs and quote_currencies cannot be used together")
            excluded = {x for x in str(p.get("excluded_pairs") or "").split(",") if x}
            count = max(1, min(300, int(p.get("count") or 20)))
            orders = self.engine.orders_list(
                account_id=k.account_id,
                states=("wait",),
                order_by=str(p.get("order_by") or "desc"),
                limit=10_000,
            )
            sel = [
                o for o in orders
                if (side == "all" or o.side == side)
                and (not pairs or o.market in pairs)
                and (not quotes or o.market.split("-", 1)[0] in quotes)
                and o.market not in excluded
            ][:count]  # fmt: skip
            return self._batch_cancel(k.account_id, sel)

        return await self._exchange(request, "order-cancel-all", fn)

    # -------------------------------------------------------------------------------------------- websocket

    async def h_ws_public(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request, private=False)

    async def h_ws_private(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request, private=True)

    async def _ws(self, request: web.Request, *, private: bool) -> web.StreamResponse:
        ok, left = self.limiter.hit("websocket-connect", request.remote or "?")
        if not ok:
            return web.Response(
                status=429, text=TOO_MANY_REQUESTS_TEXT,
                headers={"Remaining-Req": format_remaining_req("websocket", 0)},
            )  # fmt: skip
        account_id = None
        auth_error = False
        if private:
            try:
                claims = verify_jwt(
                    request.headers.get("Authorization"),
                    secret_for=self._secret_for,
                    nonce_check=self.nonces.check,
                )
                account_id = self.keys[claims["access_key"]].account_id
            except UpbitAuthError:
                auth_error = True
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1024 * 1024)
        ws.headers["Remaining-Req"] = format_remaining_req("websocket", left)
        await ws.prepare(request)
        conn = WsConn(ws, request, account_id)
        if auth_error:
            await self._ws_error(conn, "INVALID_AUTH")
            return ws
        self.conns.add(conn)
        sender = asyncio.get_running_loop().create_task(self._ws_sender(conn))
        try:
            async for msg in ws:
                conn.last_seen = time.monotonic()
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                    continue
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
                    if data.strip() == "PING":
                        self._start_status(conn)
                        continue
                    if not await self._ws_request(conn, data, private):
                        break
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            conn.closed = True
            self.conns.discard(conn)
            conn.queue.put_nowait(None)
            sender.cancel()
            if conn.status_task is not None:
                conn.status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        return ws

    async def _ws_sender(self, conn: WsConn) -> None:
        """Drain the connection's queue in batches (one wake-up sends everything queued so far)."""
        q = conn.queue
        # Without permessage-deflate a binary frame is just a header and the payload: write a whole batch
        # to the transport in one call (far cheaper per message than aiohttp's per-frame path). Every write
        # is a set of complete frames, so it cannot interleave with aiohttp's own pong/close frames.
        raw = conn.transport if not conn.ws.compress else None
        while True:
            first = await q.get()
            batch = [first]
            while not q.empty():
                batch.append(q.get_nowait())
            stop = None in batch
            frames = [d for d in batch if d is not None] if stop else batch
            if conn.ws.closed:
                return
            try:
                if raw is not None:
                    if raw.is_closing():
                        return
                    raw.write(b"".join(_ws_frame(d) for d in frames))  # type: ignore[misc]
                    while raw.get_write_buffer_size() > 4 * 1024 * 1024 and not raw.is_closing():
                        await asyncio.sleep(0.002)  # the client reads slower than we write
                else:
                    for data in frames:
                        await conn.ws.send_bytes(data)  # type: ignore[arg-type]
            except (ConnectionError, RuntimeError):
                return
            if stop:
                return

    async def _idle_watch(self) -> None:
        """Drop sockets with no client frame for ``ws_idle_timeout`` (Upbit: no close frame, 1006)."""
        idle = self.config.ws_idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            for conn in list(self.conns):
                if now - conn.last_seen > idle:
                    self._drop(conn, abort=True)

    def _start_status(self, conn: WsConn) -> None:
        if conn.status_task is not None:
            self._send(conn, b'{"status":"UP"}')
            return

        async def loop() -> None:
            while not conn.closed:
                self._send(conn, b'{"status":"UP"}')
                await asyncio.sleep(self.config.ws_status_interval)

        conn.status_task = asyncio.get_running_loop().create_task(loop())

    async def _ws_error(self, conn: WsConn, name: str, message: str | None = None) -> None:
        body = orjson.dumps({"error": {"name": name, "message": message or WS_ERRORS.get(name, name)}})
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_bytes(body)
            await asyncio.sleep(0.15)
            await conn.ws.close(code=1000)

    async def _ws_request(self, conn: WsConn, data: str, private: bool) -> bool:
        """Parse a subscription request; on error send the error frame and close (returns False)."""
        try:
            req = json.loads(data)
        except ValueError:
            await self._ws_error(conn, "WRONG_FORMAT")
            return False
        if not isinstance(req, list) or not all(isinstance(x, dict) for x in req):
            await self._ws_error(conn, "WRONG_FORMAT")
            return False
        ticket = next((x for x in req if "ticket" in x), None)
        if ticket is None or not isinstance(ticket.get("ticket"), str) or not ticket["ticket"].strip():
            await self._ws_error(conn, "NO_TICKET")
            return False
        fmt = "DEFAULT"
        for x in req:
            if "format" in x:
                fmt = str(x["format"]).upper()
                if fmt not in WS_FORMATS:
                    await self._ws_error(conn, "INVALID_PARAM", f"{x['format']} 은 지원하지 않는 포맷입니다.")
                    return False
        types = [x for x in req if "type" in x]
        if not types:
            await self._ws_error(conn, "NO_TYPE")
            return False
        subs: list[Subscription] = []
        allowed = PRIVATE_WS_TYPES if private else PUBLIC_WS_TYPES
        for t in types:
            typ = t.get("type")
            if not isinstance(typ, str) or typ not in allowed:
                await self._ws_error(conn, "INVALID_PARAM", f"{typ} 은 지원하지 않는 타입입니다.")
                return False
            codes_raw = t.get("codes")
            if typ == "myAsset" and codes_raw is not None:
                await self._ws_error(conn, "WRONG_FORMAT")
                return False
            if typ in PUBLIC_WS_TYPES:
                if codes_raw is None:
                    await self._ws_error(conn, "NO_CODES")
                    return False
                if not isinstance(codes_raw, list) or not codes_raw:
                    await self._ws_error(conn, "INVALID_PARAM", "codes 는 비어 있을 수 없습니다.")
                    return False
            codes: dict[str, int] = {}
            for c in codes_raw or []:
                if not isinstance(c, str):
                    continue
                base, depth = split_code_depth(c)
                if base in self.stats:  # unknown and lower-case codes are silently ignored (§1.3)
                    codes[base] = depth if typ == "orderbook" else ORDERBOOK_LEVELS
            only_snap = bool(t.get("is_only_snapshot", t.get("isOnlySnapshot", False)))
            only_real = bool(t.get("is_only_realtime", t.get("isOnlyRealtime", False)))
            level = t.get("level") or 0
            try:
                level = float(level)
            except (TypeError, ValueError):
                level = -1.0
            subs.append(Subscription(typ, codes, only_snap, only_real, level))
        conn.subs = subs  # a new request replaces the subscription set
        conn.fmt = fmt
        now = self.now_ms()
        for s in subs:
            if s.only_realtime or s.type in PRIVATE_WS_TYPES:
                continue
            for code, depth in s.codes.items():
                msg: dict[str, Any] | None = None
                st = self.stats[code]
                if s.type == "orderbook":
                    book = self.books.get(code)
                    if book is not None and not s.level:
                        msg = self._orderbook_msg(code, self._public_book(code, book), depth, "SNAPSHOT")
                elif s.type == "ticker" and st.started:
                    msg = st.ticker_ws(now, "SNAPSHOT")
                elif s.type == "trade" and st.trades:
                    msg = st.trade_ws(st.trades[-1], "SNAPSHOT")
                if msg is not None:
                    self._send(conn, self._encode(msg, fmt))
        return True

    def _drop(self, conn: WsConn, *, abort: bool) -> None:
        conn.closed = True
        self.conns.discard(conn)
        with contextlib.suppress(Exception):
            conn.queue.put_nowait(None)
        if abort:
            if conn.transport is not None:
                conn.transport.abort() if hasattr(conn.transport, "abort") else conn.transport.close()
        else:
            asyncio.get_running_loop().create_task(conn.ws.close(code=1001))

    # -------------------------------------------------------------------------------------------- admin

    async def h_sim_account(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            out = self.account_create(
                krw=body.get("krw", 0),
                assets=body.get("assets") or {},
                access_key=body.get("access_key"),
                secret_key=body.get("secret_key"),
                expired=bool(body.get("expired", False)),
            )
        except (ValueError, ArithmeticError) as exc:
            return _json({"error": {"name": "invalid_parameter", "message": str(exc)}}, 400)
        return _json(out, 201)

    async def h_sim_deposit(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        try:
            body = await request.json()
            b = self.engine.account_deposit(
                account_id=account_id,
                currency=str(body["currency"]).upper(),
                amount=Decimal(str(body["amount"])),
            )
        except UpbitError:
            return _json({"error": {"name": "not_found", "message": "unknown account"}}, 404)
        except (ValueError, KeyError, ArithmeticError, TypeError) as exc:
            return _json({"error": {"name": "invalid_parameter", "message": str(exc)}}, 400)
        return _json({"balance": decimal_str(b.balance), "locked": decimal_str(b.locked)})

    async def h_sim_drop(self, request: web.Request) -> web.Response:
        abort = request.query.get("mode", "abort") != "close"
        conns = list(self.conns)
        for conn in conns:
            self._drop(conn, abort=abort)
        return _json({"dropped": len(conns)})

    async def h_sim_pause(self, request: web.Request) -> web.Response:
        seconds = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict) and body.get("seconds") is not None:
                    seconds = float(body["seconds"])
        self.pause(seconds)
        return _json({"paused": True, "seconds": seconds})

    async def h_sim_resume(self, request: web.Request) -> web.Response:
        self.resume()
        return _json({"paused": False})

    async def h_sim_state(self, request: web.Request) -> web.Response:
        return _json(
            {
                "markets": self.markets,
                "now_ms": self.now_ms(),
                "connections": len(self.conns),
                "paused": self._paused_at is not None,
                "published_books": self.published_books,
                "accounts": len(self.engine.accounts),
                "signal_strength": self.config.signal_strength if self.config.source == "synthetic" else 0.0,
                "requests": dict(self.limiter.requests),  # per rate-limit group, since start
                "refused": dict(self.limiter.refused),  # 429s per group
            }
        )


class _Reject(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__("rejected")
        self.response = response


# ------------------------------------------------------------------------------------------------------ runni


async def serve(
    config: SimConfig, ready: Callable[[Simulator, int], None] | None = None, *, handle_signals: bool = False
) -> None:
    """Run until cancelled (or SIGTERM/SIGINT with ``handle_signals``)."""
    sim = Simulator(config)
    runner = web.AppRunner(sim.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    port = config.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(sim, port)
    stop = asyncio.Event()
    if handle_signals:
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_simulator(config: SimConfig) -> None:
    """Blocking entry point (the management command)."""

    def ready(sim: Simulator, port: int) -> None:
        log.info("Upbit simulator on http://%s:%d (markets %s)", config.host, port, ",".join(sim.markets))
        print(
            f"Upbit simulator listening on http://{config.host}:{port}  ws://{config.host}:{port}/websocket/v1",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, ready, handle_signals=True))


class SimulatorThread:
    """The simulator on a free port in a background thread (for tests). Use as a context manager."""

    def __init__(self, config: SimConfig | None = None, **kw: Any) -> None:
        self.config = config or SimConfig(**kw)
        self.sim: Simulator | None = None
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/websocket/v1"

    @property
    def private_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/websocket/v1/private"

    def start(self, timeout: float = 20.0) -> SimulatorThread:
        def ready(sim: Simulator, port: int) -> None:
            self.sim, self.port = sim, port
            self._ready.set()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                self._task = loop.create_task(serve(self.config, ready))
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="upbit-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def call(self, fn: Callable[[Simulator], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(sim)`` on the simulator's loop (thread-safe access to engine/state)."""
        assert self.loop is not None and self.sim is not None
        sim = self.sim

        async def run() -> Any:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def create_account(
        self, *, krw: Any = 0, assets: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, str]:
        return self.call(lambda s: s.account_create(krw=krw, assets=assets, **kw))

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self._task is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
