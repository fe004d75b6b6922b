"""The latest order book of each market as the collector streams it, so paper fills need no REST call.

Fed with the live fan-out's ``market.orderbook`` payloads (``market/fanout.py``): every process that sees
them keeps the latest per market in memory (the web process gets every one through the embedded-mode relay,
and those of watched markets through the hub), and the collector also shares them with every other process
(Celery workers, other web processes): through the cache when it is shared (Redis), else through one small
SQLite file in WAL mode (embedded mode: no server; one upsert transaction per fan-out flush, and a reader's
look-up is an indexed read that takes no lock). :func:`livebook_get` returns the freshest copy no older
than a given age, or ``None`` (use REST then). Ages are measured from when the book was published
(collector's clock) or received (this process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection

from core.broker import sqlite_connect

SHARED_TTL_S = 60  # a book older than this is useless for fills anyway

_latest: dict[str, tuple[dict[str, Any], int]] = {}
_FILE_SCHEMA = "CREATE TABLE IF NOT EXISTS book (market TEXT PRIMARY KEY, received_ms INTEGER, payload TEXT)"
_local = threading.local()  # per thread: {path: connection}, and the last parsed payload per market


@dataclass(frozen=True)
class LiveBook:
    market: str
    ts: int  # the exchange's timestamp (epoch ms)
    received_ms: int  # when it was published or received (epoch ms, wall clock)
    asks: list[list[float]]  # [price, size, cumulative size], best first
    bids: list[list[float]]
    where: str  # "memory", "cache" (Redis) or "file" (the embedded share)

    def age_ms(self, now_ms: int | None = None) -> int:
        now_ms = now_ms if now_ms is not None else _now_ms()
        return max(0, now_ms - self.received_ms)


def _now_ms() -> int:
    return int(time.time() * 1000)


def cache_key(market: str) -> str:
    return f"market:livebook:{market}"


def shared_cache_available() -> bool:
    """Whether the default cache is seen by every process (Redis), not this process's memory only."""
    return not isinstance(caches["default"], LocMemCache)


def livebook_record(*, data: dict[str, Any], received_ms: int | None = None) -> None:
    """Keep one ``market.orderbook`` payload as its market's latest book in this process (O(1), no copy)."""
    market = data.get("market")
    if not isinstance(market, str) or not data.get("asks") and not data.get("bids"):
        return
    _latest[market] = (data, received_ms if received_ms is not None else _now_ms())


def livebook_record_event(message: dict[str, Any]) -> None:
    """The relay/hub tap: a channel-layer event ``{"type": "market.orderbook", "data": {...}}``."""
    if message.get("type") == "market.orderbook" and isinstance(message.get("data"), dict):
        livebook_record(data=message["data"])


def share_file_path() -> Path:
    """The embedded share: one file per database, so the processes of one deployment (which share its
    database) share books, and nobody else's (another checkout's, or a parallel test run's) are read."""

    db = connection.settings_dict
    ident = "|".join(str(db.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME"))
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return Path(settings.VAR_DIR) / "livebook" / f"books-{digest}.sqlite"


def _file_conn(*, create: bool) -> sqlite3.Connection | None:
    path = share_file_path()
    conns: dict[Path, sqlite3.Connection] = getattr(_local, "conns", None) or {}
    _local.conns = conns
    conn = conns.get(path)
    if conn is None:
        if not create and not path.exists():
            return None
        conn = sqlite_connect(path, timeout=2.0)
        conn.execute(_FILE_SCHEMA)
        conns[path] = conn
    return conn


def livebook_share(*, books: list[dict[str, Any]]) -> None:
    """Share books with every other process: the shared cache (Redis, one round trip), else the embedded
    share file (one transaction)."""
    books = [b for b in books if isinstance(b.get("market"), str)]
    if not books:
        return
    now = _now_ms()
    if shared_cache_available():
        caches["default"].set_many({cache_key(b["market"]): (b, now) for b in books}, SHARED_TTL_S)
        return
    conn = _file_conn(create=True)
    assert conn is not None
    rows = [(b["market"], now, json.dumps(b, separators=(",", ":"))) for b in books]
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO book (market, received_ms, payload) VALUES (?, ?, ?) ON CONFLICT (market) "
            "DO UPDATE SET received_ms = excluded.received_ms, payload = excluded.payload",
            rows,
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


async def alivebook_share(*, books: list[dict[str, Any]]) -> None:
    if books:
        await asyncio.to_thread(livebook_share, books=books)


def _file_get(market: str) -> tuple[dict[str, Any], int] | None:
    """The embedded share's copy of ``market`` (parsed once per new copy, per thread)."""
    try:
        conn = _file_conn(create=False)
        if conn is None:
            return None
        row = conn.execute("SELECT received_ms, payload FROM book WHERE market = ?", (market,)).fetchone()
    except sqlite3.Error:
        return None  # unreadable share: the REST fallback fills the order
    if row is None:
        return None
    parsed: dict[str, tuple[dict[str, Any], int]] = getattr(_local, "parsed", None) or {}
    _local.parsed = parsed
    hit = parsed.get(market)
    if hit is None or hit[1] != row[0]:
        hit = (json.loads(row[1]), int(row[0]))
        parsed[market] = hit
    return hit


def livebook_get(*, market: str, max_age_ms: int) -> LiveBook | None:
    """The freshest book of ``market`` no older than ``max_age_ms``: this process's memory first, then the
    shared cache (Redis) or the embedded share file; ``None`` when none has one that fresh."""
    now = _now_ms()
    hit = _latest.get(market)
    if hit is not None and now - hit[1] <= max_age_ms:
        return _book(hit, "memory")
    if shared_cache_available():
        shared = caches["default"].get(cache_key(market))
        if shared is not None and now - shared[1] <= max_age_ms:
            return _book(shared, "cache")
        return None
    shared = _file_get(market)
    if shared is not None and now - shared[1] <= max_age_ms:
        return _book(shared, "file")
    return None


def _book(hit: tuple[dict[str, Any], int], where: str) -> LiveBook:
    data, received_ms = hit
    return LiveBook(
        market=str(data["market"]),
        ts=int(data.get("ts") or 0),
        received_ms=received_ms,
        asks=list(data.get("asks") or []),
        bids=list(data.get("bids") or []),
        where=where,
    )


def livebook_clear(*, shared: bool = True) -> None:
    """Forget the books kept in this process and (``shared``) in the embedded share file (tests)."""
    _latest.clear()
    if shared:
        conn = _file_conn(create=False)
        if conn is not None:
            conn.execute("DELETE FROM book")
