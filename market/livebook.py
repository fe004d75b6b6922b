"""The latest order book of each market as the collector streams it, so paper fills need no REST call.

Fed with the live fan-out's ``market.orderbook`` payloads (``market/fanout.py``): every process that sees
them keeps the latest per market in memory (the web process gets every one through the embedded-mode relay,
and those of watched markets through the hub), and the collector also writes them to the shared cache when
the cache is shared between processes (Redis), where Celery workers and other web processes read them.
:func:`livebook_get` returns the freshest copy no older than a given age, or ``None`` (use REST then).
Ages are measured from when the book was published (collector's clock) or received (this process).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

SHARED_TTL_S = 60  # a book older than this is useless for fills anyway

_latest: dict[str, tuple[dict[str, Any], int]] = {}


@dataclass(frozen=True)
class LiveBook:
    market: str
    ts: int  # the exchange's timestamp (epoch ms)
    received_ms: int  # when it was published or received (epoch ms, wall clock)
    asks: list[list[float]]  # [price, size, cumulative size], best first
    bids: list[list[float]]
    where: str  # "memory" or "cache"

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


def livebook_share(*, books: list[dict[str, Any]]) -> None:
    """Write books to the shared cache (one round trip); nothing when the cache is per process."""
    if not books or not shared_cache_available():
        return
    now = _now_ms()
    caches["default"].set_many(
        {cache_key(b["market"]): (b, now) for b in books if b.get("market")}, SHARED_TTL_S
    )


async def alivebook_share(*, books: list[dict[str, Any]]) -> None:
    if books and shared_cache_available():
        await asyncio.to_thread(livebook_share, books=books)


def livebook_get(*, market: str, max_age_ms: int) -> LiveBook | None:
    """The freshest book of ``market`` no older than ``max_age_ms``: this process's memory first, then the
    shared cache; ``None`` when neither has one that fresh."""
    now = _now_ms()
    hit = _latest.get(market)
    if hit is not None and now - hit[1] <= max_age_ms:
        return _book(hit, "memory")
    if shared_cache_available():
        shared = caches["default"].get(cache_key(market))
        if shared is not None and now - shared[1] <= max_age_ms:
            return _book(shared, "cache")
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


def livebook_clear() -> None:
    """Forget the books kept in this process (tests)."""
    _latest.clear()
