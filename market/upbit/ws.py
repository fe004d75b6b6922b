"""Upbit public WebSocket streamer: orderbook + trade + ticker for many markets over a small connection pool.

* one request frame per connection subscribes every type for all of its codes (large code lists, e.g. every
  KRW market, are split across ``ceil(n / codes_per_connection)`` connections opened a little apart, as
  Upbit limits upgrades to 5/s);
* protocol pings keep the socket alive (Upbit closes idle sockets after ~60 s) and detect dead peers; a text
  ``PING`` asks Upbit for ``{"status":"UP"}`` every ~10 s, so quiet markets do not look like a dead stream;
* on any drop (close, error, ping timeout, or no frame for ``silence_timeout``) it reconnects with exponential
  backoff + full jitter and re-sends the full request, which makes Upbit send a fresh SNAPSHOT per code;
* every disconnected period becomes a gap (``on_gap``) for each of the connection's codes — never silent;
* :meth:`UpbitStreamer.set_codes` changes the markets while it runs (a sharded collector's leases): a
  connection whose codes change sends one new request on the same socket (Upbit replaces the previous
  subscription), so the markets it keeps see no reconnect and no gap; a connection left with no code closes;
* malformed frames are counted and logged (reason only, never the payload) and skipped.

Trade continuity (duplicate or backwards ``sequential_id``) is checked by :class:`TradeSequenceTracker`,
which the collector runs on the parsed records. No Django import.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from market.upbit.records import MalformedFrame, Record, ServerErrorFrame, TradeRecord, parse_frame

logger = logging.getLogger(__name__)

DEFAULT_TYPES = ("orderbook", "trade", "ticker")
GapCallback = Callable[[str, int, int, str, str], None]
RecordsCallback = Callable[[list[Record]], None]


def now_ms() -> int:
    return int(time.time() * 1000)


def request_frame(
    codes: Sequence[str],
    types: Sequence[str] = DEFAULT_TYPES,
    *,
    fmt: str = "DEFAULT",
    ticket: str | None = None,
    orderbook_depth: int | None = None,
) -> bytes:
    """The subscription frame: ``[ticket, {type, codes}..., format]`` (§10.1)."""
    frame: list[dict[str, Any]] = [{"ticket": ticket or str(uuid.uuid4())}]
    for t in types:
        cs = list(codes)
        if t == "orderbook" and orderbook_depth:
            cs = [f"{c}.{orderbook_depth}" for c in cs]
        frame.append({"type": t, "codes": cs})
    frame.append({"format": fmt})
    return orjson.dumps(frame)


def split_codes(codes: Sequence[str], per_connection: int) -> list[list[str]]:
    codes = list(dict.fromkeys(codes))  # de-duplicate, keep order
    if not codes:
        return []
    n = max(1, math.ceil(len(codes) / max(1, per_connection)))
    base, extra = divmod(len(codes), n)  # balanced: sizes differ by at most one
    groups, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        groups.append(codes[start : start + size])
        start += size
    return groups


@dataclass
class StreamStats:
    frames: int = 0
    records: int = 0
    malformed: int = 0
    server_errors: int = 0
    connects: int = 0
    reconnects: int = 0
    gaps: int = 0
    last_frame_ms: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class _Slot:
    """One connection of the pool and the codes it subscribes now (changed by ``set_codes``)."""

    index: int
    codes: list[str]
    added: dict[str, int] = field(default_factory=dict)  # code -> when it joined (clips its first gap)
    ws: Any = None
    closing: bool = False  # closed on purpose (its codes went elsewhere): not an outage
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class TradeSequenceTracker:
    """Per-market check of trade ``sequential_id``: duplicates are dropped, going backwards is a gap.

    Upbit re-sends the last trade as a SNAPSHOT after each (re)subscription; that duplicate is expected and
    dropped without a gap record. Any other duplicate or a backwards id is reported.
    """

    def __init__(self, memory: int = 4096) -> None:
        self._last: dict[str, int] = {}
        self._seen: dict[str, collections.OrderedDict[int, None]] = {}
        self._memory = memory

    def check(self, rec: TradeRecord) -> tuple[bool, str | None, str]:
        """Returns ``(keep, gap_reason or None, detail)``."""
        seen = self._seen.get(rec.code)
        if seen is None:
            seen = self._seen[rec.code] = collections.OrderedDict()
        sid = rec.sequential_id
        if sid in seen:
            if rec.snapshot:
                return False, None, ""
            return False, "duplicate", f"sequential_id {sid} received twice"
        seen[sid] = None
        if len(seen) > self._memory:
            seen.popitem(last=False)
        last = self._last.get(rec.code)
        self._last[rec.code] = sid if last is None else max(last, sid)
        if last is not None and sid < last and not rec.snapshot:
            return True, "sequence", f"sequential_id went back from {last} to {sid}"
        return True, None, ""


class UpbitStreamer:
    """Streams the public market data of ``codes`` into ``on_records`` until :meth:`stop` is called."""

    def __init__(
        self,
        url: str,
        codes: Sequence[str],
        *,
        on_records: RecordsCallback,
        on_gap: GapCallback | None = None,
        types: Sequence[str] = DEFAULT_TYPES,
        fmt: str = "DEFAULT",
        codes_per_connection: int = 100,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        silence_timeout: float = 90.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        open_interval: float = 0.25,
        compression: str | None = "deflate",
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.codes = list(dict.fromkeys(codes))
        self.on_records = on_records
        self.on_gap = on_gap
        self.types = tuple(types)
        self.fmt = fmt
        self.codes_per_connection = max(1, codes_per_connection)
        self._slots = [
            _Slot(i, group) for i, group in enumerate(split_codes(self.codes, codes_per_connection))
        ]
        self._running = False
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.silence_timeout = silence_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.open_interval = open_interval
        self.compression = compression
        self.clock = clock
        self.stats = StreamStats()
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._sockets: set[Any] = set()
        self._malformed_logged = 0.0

    def stop(self) -> None:
        self._stop.set()
        for ws in list(self._sockets):
            asyncio.ensure_future(ws.close())

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def groups(self) -> list[list[str]]:
        """The codes of each connection, in connection order."""
        return [list(slot.codes) for slot in self._slots]

    def set_codes(self, codes: Sequence[str]) -> None:
        """Stream ``codes`` from now on. Codes that stay keep their connection untouched; removed ones are
        dropped from their connection's request; new ones fill connections with room (new connections
        open when all are full). Each changed connection re-sends its request once."""
        wanted = list(dict.fromkeys(codes))
        keep = set(wanted)
        now = self.clock()
        changed: set[int] = set()
        placed: set[str] = set()
        for slot in self._slots:
            kept = [c for c in slot.codes if c in keep]
            if len(kept) != len(slot.codes):
                slot.codes = kept
                slot.added = {c: t for c, t in slot.added.items() if c in keep}
                changed.add(slot.index)
            placed.update(kept)
        todo = [c for c in wanted if c not in placed]
        for slot in sorted(self._slots, key=lambda s: len(s.codes)):
            room = self.codes_per_connection - len(slot.codes)
            if room > 0 and todo:
                slot.codes = slot.codes + todo[:room]
                slot.added.update(dict.fromkeys(todo[:room], now))
                del todo[:room]
                changed.add(slot.index)
        while todo:
            slot = _Slot(len(self._slots), todo[: self.codes_per_connection])
            slot.added = dict.fromkeys(slot.codes, now)
            del todo[: self.codes_per_connection]
            self._slots.append(slot)
            if self._running:
                slot.task = asyncio.create_task(self._connection(slot, delay=0.0))
        self.codes = wanted
        for slot in self._slots:
            if slot.index in changed:
                slot.changed.set()
                if slot.ws is not None:
                    if slot.codes:
                        asyncio.ensure_future(self._resubscribe(slot, slot.ws))
                    else:
                        slot.closing = True
                        asyncio.ensure_future(slot.ws.close())

    async def _resubscribe(self, slot: _Slot, ws: Any) -> None:
        try:
            await ws.send(request_frame(slot.codes, self.types, fmt=self.fmt))
        except (ConnectionClosed, OSError):  # it reconnects with the current codes anyway
            return
        logger.info("upbit websocket %d now streams %d markets", slot.index, len(slot.codes))

    async def run(self) -> None:
        self._running = True
        for slot in self._slots:
            slot.task = asyncio.create_task(self._connection(slot, delay=slot.index * self.open_interval))
        try:
            await self._stop.wait()
        finally:
            self._running = False
            tasks = [slot.task for slot in self._slots if slot.task is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _backoff(self, attempt: int) -> float:
        step = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _gap(
        self,
        codes: Sequence[str],
        start: int,
        end: int,
        reason: str,
        detail: str,
        since: Mapping[str, int] | None = None,
    ) -> None:
        self.stats.gaps += 1
        logger.warning("market data gap: %s, %d markets, %d ms (%s)", reason, len(codes), end - start, detail)
        if self.on_gap is None:
            return
        for code in codes:
            self.on_gap(code, max(start, since.get(code, start)) if since else start, end, reason, detail)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _connection(self, slot: _Slot, delay: float) -> None:
        if delay:
            await self._sleep(delay)
        index = slot.index
        attempt = 0
        down_since: int | None = None  # start of the current outage (last frame before it)
        down_reason = ""
        while not self._stop.is_set():
            if not slot.codes:  # all its markets went elsewhere: idle until some come back
                down_since, attempt = None, 0
                slot.changed.clear()
                waiter = asyncio.ensure_future(slot.changed.wait())
                stopper = asyncio.ensure_future(self._stop.wait())
                try:
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
                continue
            last_frame = 0
            try:
                async with connect(
                    self.url,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    open_timeout=10,
                    close_timeout=2,
                    max_size=2**23,
                    compression=self.compression,
                    user_agent_header="OBservator/1.0",
                ) as ws:
                    self._sockets.add(ws)
                    slot.ws, slot.closing = ws, False
                    try:
                        await ws.send(request_frame(slot.codes, self.types, fmt=self.fmt))
                        # Text PING makes Upbit send {"status":"UP"} every ~10 s, so even a connection whose
                        # markets are all quiet keeps receiving frames and silence really means trouble.
                        await ws.send("PING")
                        self.stats.connects += 1
                        connected_at = self.clock()
                        if down_since is not None:
                            self.stats.reconnects += 1
                            self._gap(
                                slot.codes, down_since, connected_at, "reconnect", down_reason, slot.added
                            )
                            down_since = None
                        slot.added.clear()
                        logger.info("upbit websocket %d connected (%d markets)", index, len(slot.codes))
                        while not self._stop.is_set():
                            try:
                                frame = await asyncio.wait_for(ws.recv(), timeout=self.silence_timeout)
                            except TimeoutError:
                                down_reason = f"no frame for {self.silence_timeout:g}s"
                                break
                            last_frame = self.clock()
                            attempt = 0
                            self._handle(frame, last_frame)
                        else:
                            return
                    finally:
                        self._sockets.discard(ws)
                        slot.ws = None
            except ConnectionClosed as exc:
                down_reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                down_reason = f"connect failed ({type(exc).__name__})"
            except asyncio.CancelledError:
                raise
            if self._stop.is_set():
                return
            if slot.closing or not slot.codes:
                # Closed on purpose (its markets went elsewhere): no outage, even if new codes came in
                # meanwhile (their holes are their new holder's takeover gaps); connect again at once.
                slot.closing, down_since, attempt = False, None, 0
                continue
            if down_since is None:
                down_since = last_frame or self.clock()
            wait = self._backoff(attempt)
            attempt += 1
            logger.warning("upbit websocket %d down: %s; reconnecting in %.2fs", index, down_reason, wait)
            await self._sleep(wait)

    def _handle(self, frame: bytes | str, recv_ts: int) -> None:
        stats = self.stats
        stats.frames += 1
        stats.last_frame_ms = recv_ts
        try:
            records = parse_frame(frame, recv_ts)
        except MalformedFrame as exc:
            stats.malformed += 1
            stats.errors[str(exc)] += 1
            # Rate-limit the log, never include the payload (a frame is data, but logs are not its place).
            if time.monotonic() - self._malformed_logged > 5.0:
                self._malformed_logged = time.monotonic()
                logger.warning("skipped a malformed websocket frame: %s (%d so far)", exc, stats.malformed)
            return
        except ServerErrorFrame as exc:
            stats.server_errors += 1
            logger.error("upbit websocket refused the subscription: %s", exc.name)
            return
        if records:
            stats.records += len(records)
            try:
                self.on_records(records)
            except Exception:  # noqa: BLE001 - a consumer bug must not kill the stream
                logger.exception("market data consumer failed on %d record(s)", len(records))
