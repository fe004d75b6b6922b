"""The simulator's WebSocket side (public and private): subscription requests, SNAPSHOT frames, the
realtime fan-out with per-connection queues, PING status, idle drops and Upbit's error frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from market.dayfiles import BookArrays
from market.upbit.protocol import (
    ORDERBOOK_LEVELS,
    PRIVATE_WS_TYPES,
    PUBLIC_WS_TYPES,
    TOO_MANY_REQUESTS_TEXT,
    WS_ERRORS,
    WS_FORMATS,
    UpbitAuthError,
    format_remaining_req,
    split_code_depth,
)

from .engine import AssetEvent, EngineEvent, OrderEvent
from .frames import encode_orderbooks
from .messages import encode, my_asset_msg, my_order_msg, orderbook_msg
from .source import BookSnapshot, TradeTick
from .stats import MarketStats

if TYPE_CHECKING:
    from .server import Simulator

log = logging.getLogger("market.upbit_sim")


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


def ws_frame(payload: bytes) -> bytes:
    """An unmasked, final, binary WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 65536:
        return bytes((0x82, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x82, 127)) + n.to_bytes(8, "big") + payload


class WsHub:
    """Every open socket of one simulator and what is sent to them."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.conns: set[WsConn] = set()

    # -------------------------------------------------------------------------------------------- fan-out

    def send(self, conn: WsConn, data: bytes) -> None:
        if conn.closed:
            return
        cfg = self.sim.config
        if conn.queue.qsize() >= cfg.ws_queue_max and cfg.speed != 0:
            log.warning("dropping a slow WebSocket client (backlog %d)", conn.queue.qsize())
            self.drop(conn, abort=True)
            return
        conn.queue.put_nowait(data)

    def publish_trade(self, m: str, st: MarketStats, t: TradeTick) -> None:
        """A public trade to the ``trade`` and ``ticker`` subscribers of ``m`` (one encoding per format)."""
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
                    data = cache[key] = encode(msg, conn.fmt)
                self.send(conn, data)

    def publish_book(self, m: str, book: BookSnapshot) -> None:
        """A book to the ``orderbook`` subscribers of ``m`` (one encoding per depth and format)."""
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
                    msg_book = self.sim.public_book(m, book)
                data = cache[key] = encode(orderbook_msg(m, msg_book, depth, "REALTIME"), conn.fmt)
            self.send(conn, data)

    def publish_book_arrays(self, m: str, books: BookArrays) -> None:
        """Unpaced fast path: every book of ``books`` encoded from the arrays in one go."""
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
                    self.send(conn, f)

    def on_engine_event(self, ev: EngineEvent) -> None:
        """Private ``myOrder``/``myAsset`` events to the owner's subscribed sockets."""
        if not self.conns or not isinstance(ev, OrderEvent | AssetEvent):
            return
        for conn in list(self.conns):
            if conn.account_id != ev.account_id:
                continue
            if isinstance(ev, OrderEvent):
                sub = conn.by_type("myOrder")
                if sub is None or (sub.codes and ev.order.market not in sub.codes):
                    continue
                self.send(conn, encode(my_order_msg(ev), conn.fmt))
            else:
                if conn.by_type("myAsset") is None:
                    continue
                acc = self.sim.engine.accounts[ev.account_id]
                self.send(conn, encode(my_asset_msg(ev, acc), conn.fmt))

    def drop(self, conn: WsConn, *, abort: bool) -> None:
        conn.closed = True
        self.conns.discard(conn)
        with contextlib.suppress(Exception):
            conn.queue.put_nowait(None)
        if abort:
            if conn.transport is not None:
                conn.transport.abort() if hasattr(conn.transport, "abort") else conn.transport.close()
        else:
            asyncio.get_running_loop().create_task(conn.ws.close(code=1001))

    def drop_all(self, *, abort: bool) -> int:
        conns = list(self.conns)
        for conn in conns:
            self.drop(conn, abort=abort)
        return len(conns)

    # -------------------------------------------------------------------------------------------- sockets

    async def h_public(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, private=False)

    async def h_private(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, private=True)

    async def serve(self, request: web.Request, *, private: bool) -> web.StreamResponse:
        ok, left = self.sim.limiter.hit("websocket-connect", request.remote or "?")
        if not ok:
            return web.Response(
                status=429, text=TOO_MANY_REQUESTS_TEXT,
                headers={"Remaining-Req": format_remaining_req("websocket", 0)},
            )  # fmt: skip
        account_id = None
        auth_error = False
        if private:
            try:
                account_id = self.sim.keys.verify(request.headers.get("Authorization")).account_id
            except UpbitAuthError:
                auth_error = True
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1024 * 1024)
        ws.headers["Remaining-Req"] = format_remaining_req("websocket", left)
        await ws.prepare(request)
        conn = WsConn(ws, request, account_id)
        if auth_error:
            await self._error(conn, "INVALID_AUTH")
            return ws
        self.conns.add(conn)
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
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
                    if not await self._request(conn, data, private):
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

    async def _sender(self, conn: WsConn) -> None:
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
                    raw.write(b"".join(ws_frame(d) for d in frames))  # type: ignore[misc]
                    while raw.get_write_buffer_size() > 4 * 1024 * 1024 and not raw.is_closing():
                        await asyncio.sleep(0.002)  # the client reads slower than we write
                else:
                    for data in frames:
                        await conn.ws.send_bytes(data)  # type: ignore[arg-type]
            except (ConnectionError, RuntimeError):
                return
            if stop:
                return

    async def idle_watch(self) -> None:
        """Drop sockets with no client frame for ``ws_idle_timeout`` (Upbit: no close frame, 1006)."""
        idle = self.sim.config.ws_idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            for conn in list(self.conns):
                if now - conn.last_seen > idle:
                    self.drop(conn, abort=True)

    def _start_status(self, conn: WsConn) -> None:
        if conn.status_task is not None:
            self.send(conn, b'{"status":"UP"}')
            return

        async def loop() -> None:
            while not conn.closed:
                self.send(conn, b'{"status":"UP"}')
                await asyncio.sleep(self.sim.config.ws_status_interval)

        conn.status_task = asyncio.get_running_loop().create_task(loop())

    async def _error(self, conn: WsConn, name: str, message: str | None = None) -> None:
        body = orjson.dumps({"error": {"name": name, "message": message or WS_ERRORS.get(name, name)}})
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_bytes(body)
            await asyncio.sleep(0.15)
            await conn.ws.close(code=1000)

    async def _request(self, conn: WsConn, data: str, private: bool) -> bool:
        """Parse a subscription request; on error send the error frame and close (returns False)."""
        try:
            req = json.loads(data)
        except ValueError:
            await self._error(conn, "WRONG_FORMAT")
            return False
        if not isinstance(req, list) or not all(isinstance(x, dict) for x in req):
            await self._error(conn, "WRONG_FORMAT")
            return False
        ticket = next((x for x in req if "ticket" in x), None)
        if ticket is None or not isinstance(ticket.get("ticket"), str) or not ticket["ticket"].strip():
            await self._error(conn, "NO_TICKET")
            return False
        fmt = "DEFAULT"
        for x in req:
            if "format" in x:
                fmt = str(x["format"]).upper()
                if fmt not in WS_FORMATS:
                    await self._error(conn, "INVALID_PARAM", f"{x['format']} 은 지원하지 않는 포맷입니다.")
                    return False
        types = [x for x in req if "type" in x]
        if not types:
            await self._error(conn, "NO_TYPE")
            return False
        subs: list[Subscription] = []
        allowed = PRIVATE_WS_TYPES if private else PUBLIC_WS_TYPES
        stats = self.sim.stats
        for t in types:
            typ = t.get("type")
            if not isinstance(typ, str) or typ not in allowed:
                await self._error(conn, "INVALID_PARAM", f"{typ} 은 지원하지 않는 타입입니다.")
                return False
            codes_raw = t.get("codes")
            if typ == "myAsset" and codes_raw is not None:
                await self._error(conn, "WRONG_FORMAT")
                return False
            if typ in PUBLIC_WS_TYPES:
                if codes_raw is None:
                    await self._error(conn, "NO_CODES")
                    return False
                if not isinstance(codes_raw, list) or not codes_raw:
                    await self._error(conn, "INVALID_PARAM", "codes 는 비어 있을 수 없습니다.")
                    return False
            codes: dict[str, int] = {}
            for c in codes_raw or []:
                if not isinstance(c, str):
                    continue
                base, depth = split_code_depth(c)
                if base in stats:  # unknown and lower-case codes are silently ignored (§1.3)
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
        self._snapshots(conn, subs, fmt)
        return True

    def _snapshots(self, conn: WsConn, subs: list[Subscription], fmt: str) -> None:
        """The SNAPSHOT frame of each subscribed code (unless only-realtime)."""
        now = self.sim.now_ms()
        for s in subs:
            if s.only_realtime or s.type in PRIVATE_WS_TYPES:
                continue
            for code, depth in s.codes.items():
                msg: dict[str, Any] | None = None
                st = self.sim.stats[code]
                if s.type == "orderbook":
                    book = self.sim.books.get(code)
                    if book is not None and not s.level:
                        msg = orderbook_msg(code, self.sim.public_book(code, book), depth, "SNAPSHOT")
                elif s.type == "ticker" and st.started:
                    msg = st.ticker_ws(now, "SNAPSHOT")
                elif s.type == "trade" and st.trades:
                    msg = st.trade_ws(st.trades[-1], "SNAPSHOT")
                if msg is not None:
                    self.send(conn, encode(msg, fmt))
