"""Per-process market subscription hub for browser WebSockets: one channel-layer subscription per market.

Every connection subscribed to a market in this process shares one receiver on the group ``market.<CODE>``;
each event is serialised once into a text frame, kept as the market's latest state (the snapshot cache)
and offered to the local connections, which send it at their own pace (latest wins). With 500 browsers on
one market the channel layer carries one message per event, not 500.

Browser frames (the envelope of :class:`core.messages.Frame`): ``{"type": kind, "market": CODE, "data":
{...}}`` and, on (re)subscribe, ``{"type": "snapshot", "market": CODE, "data": {"orderbook", "ticker",
"trades": [..], <latest of every other kind>, "updated_at", "stale"}}``. The market kinds (``orderbook``,
``trade``, ``ticker``) are the Structs of :mod:`market.messages`; a higher app adds a kind by publishing
``market.<kind>`` to the group (mlmodel's ``prediction``): the hub relays its ``data`` as it is and keeps the
latest one for the snapshot, without knowing its fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer

from core import metrics
from market.livebook import livebook_record
from market.messages import MARKET_EVENTS, market_group
from market.selectors import market_rest_snapshot_get

logger = logging.getLogger(__name__)

try:  # orjson is several times faster and the hot path serialises every event once per process
    import orjson

    def dumps(obj: Any) -> str:
        return orjson.dumps(obj).decode()
except ImportError:  # pragma: no cover

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))


SNAPSHOT_TRADES = 50
_REFETCH_AFTER_S = 10.0
_GROUP_REFRESH_S = 1800.0  # the in-memory layer forgets group members after a day; re-add well before
_KIND_RE = re.compile(r"[a-z][a-z_]{0,31}")
_RESERVED = frozenset({"snapshot", "error", "pong", "trades", "updated_at", "stale"})


class Subscriber(Protocol):
    def offer(self, kind: str, frame: str) -> None: ...


class MarketState:
    """The latest payload per kind of one market, as this process last received it."""

    __slots__ = ("orderbook", "ticker", "others", "trades", "updated_at")

    def __init__(self) -> None:
        self.orderbook: dict[str, Any] | None = None
        self.ticker: dict[str, Any] | None = None
        self.others: dict[str, dict[str, Any]] = {}  # kinds of higher apps (prediction), latest wins
        self.trades: deque[dict[str, Any]] = deque(maxlen=SNAPSHOT_TRADES)
        self.updated_at: float = 0.0

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        self.updated_at = time.time()
        if kind == "orderbook":
            self.orderbook = data
        elif kind == "ticker":
            self.ticker = data
        elif kind == "trade":
            self.trades.extend(data.get("trades") or [])
        else:
            self.others[kind] = data

    def complete(self) -> bool:
        return self.orderbook is not None and self.ticker is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.others,
            "orderbook": self.orderbook,
            "ticker": self.ticker,
            "trades": list(self.trades),
            "updated_at": int(self.updated_at * 1000) if self.updated_at else None,
        }


class MarketHub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.states: dict[str, MarketState] = {}
        self._subs: dict[str, set[Subscriber]] = {}
        self._receivers: dict[str, asyncio.Task[None]] = {}
        self._channels: dict[str, str] = {}
        self._joined: dict[str, asyncio.Event] = {}
        self._fetch_locks: dict[str, asyncio.Lock] = {}
        self._fetched_at: dict[str, float] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.events_received = 0

    # -- subscriptions --------------------------------------------------------------------------------

    def subscriber_count(self, market: str | None = None) -> int:
        if market is not None:
            return len(self._subs.get(market, ()))
        return sum(len(s) for s in self._subs.values())

    async def subscribe(self, market: str, sub: Subscriber) -> None:
        subs = self._subs.setdefault(market, set())
        subs.add(sub)
        metrics.fanout_clients(self.subscriber_count())
        if self.layer is None:
            return
        if market not in self._receivers:
            # Registered before any await: concurrent first subscribers share this one receiver.
            self._joined[market] = asyncio.Event()
            self._receivers[market] = asyncio.create_task(self._receive(market), name=f"market-hub-{market}")
            if self._refresher is None and isinstance(self.layer, InMemoryChannelLayer):
                self._refresher = asyncio.create_task(self._refresh_groups(), name="market-hub-refresh")
        joined = self._joined.get(market)
        if joined is not None:
            # Return once the group is joined, so the snapshot sent next is followed by every later update.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(joined.wait(), timeout=5)

    async def unsubscribe(self, market: str, sub: Subscriber) -> None:
        subs = self._subs.get(market)
        if not subs:
            return
        subs.discard(sub)
        metrics.fanout_clients(self.subscriber_count())
        if subs:
            return
        del self._subs[market]
        # Without a receiver the cached state would silently age: the next subscriber starts afresh.
        self.states.pop(market, None)
        self._fetched_at.pop(market, None)
        self._fetch_locks.pop(market, None)
        task = self._receivers.pop(market, None)
        channel = self._channels.pop(market, None)
        self._joined.pop(market, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if channel is not None and self.layer is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(market_group(market), channel)

    async def _refresh_groups(self) -> None:
        while True:
            await asyncio.sleep(_GROUP_REFRESH_S)
            for market, channel in list(self._channels.items()):
                with contextlib.suppress(Exception):
                    await self.layer.group_add(market_group(market), channel)

    async def _receive(self, market: str) -> None:
        assert self.layer is not None
        channel = await self.layer.new_channel("market-hub.")
        self._channels[market] = channel
        while True:
            try:
                await self.layer.group_add(market_group(market), channel)
                break
            except Exception:  # noqa: BLE001 - layer down (Redis restarting): keep trying, browsers wait
                logger.exception("market hub: cannot join %s", market)
                joined = self._joined.get(market)
                if joined is not None:
                    joined.set()  # do not hold connecting browsers; they get the snapshot meanwhile
                await asyncio.sleep(1.0)
        joined = self._joined.get(market)
        if joined is not None:
            joined.set()
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a layer hiccup (Redis restart) must not kill the stream
                logger.exception("market hub: receive failed for %s", market)
                await asyncio.sleep(1.0)
                continue
            self.dispatch(market, message)

    # -- events ---------------------------------------------------------------------------------------

    def dispatch(self, market: str, message: dict[str, Any]) -> None:
        """Apply one channel-layer event to the cache and offer its frame to the local connections."""
        mtype = str(message.get("type", ""))
        if not mtype.startswith("market."):
            return
        kind = mtype[len("market.") :]
        data = message.get("data")
        if not isinstance(data, dict) or not _relayed(kind):
            return
        self.events_received += 1
        self.states.setdefault(market, MarketState()).apply(kind, data)
        if kind == "orderbook":
            livebook_record(data=data)  # paper fills in this process read it (market/livebook.py)
        subs = self._subs.get(market)
        if not subs:
            return
        frame = dumps({"type": kind, "market": market, "data": data})
        metrics.fanout_lag(kind, data)
        for sub in subs:
            sub.offer(kind, frame)

    # -- snapshots ------------------------------------------------------------------------------------

    async def snapshot(self, market: str, *, fetch_timeout: float = 3.0) -> dict[str, Any]:
        """The latest known state; on the first subscribe of a market with no live data, fetched over REST."""
        state = self.states.get(market)
        if (state is None or not state.complete()) and self._may_fetch(market):
            lock = self._fetch_locks.setdefault(market, asyncio.Lock())
            async with lock:
                state = self.states.get(market)
                if (state is None or not state.complete()) and self._may_fetch(market):
                    self._fetched_at[market] = time.monotonic()
                    await self._fetch(market, timeout=fetch_timeout)
                    state = self.states.get(market)
        data = state.as_dict() if state is not None else MarketState().as_dict()
        data["stale"] = state is None or not state.complete()
        return data

    def _may_fetch(self, market: str) -> bool:
        # One REST attempt per market per interval: a burst of connections to a market whose stream has not
        # delivered everything yet (or an unreachable Upbit) must not turn into a burst of REST calls.
        last = self._fetched_at.get(market)
        return last is None or time.monotonic() - last >= _REFETCH_AFTER_S

    async def _fetch(self, market: str, *, timeout: float) -> None:
        try:
            fetched = await asyncio.wait_for(market_rest_snapshot_get(market=market), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - the live stream still fills the state in
            logger.warning("market hub: REST snapshot for %s failed: %s", market, exc.__class__.__name__)
            return
        state = self.states.setdefault(market, MarketState())
        # Live data that arrived while fetching is newer than the REST answer: keep it.
        if state.orderbook is None and fetched.get("orderbook"):
            state.orderbook = fetched["orderbook"]
        if state.ticker is None and fetched.get("ticker"):
            state.ticker = fetched["ticker"]
        if not state.trades and fetched.get("trades"):
            state.trades.extend(fetched["trades"])
        state.updated_at = state.updated_at or time.time()


def _relayed(kind: str) -> bool:
    return kind in MARKET_EVENTS or (kind not in _RESERVED and _KIND_RE.fullmatch(kind) is not None)


_hubs: dict[int, MarketHub] = {}


def get_hub() -> MarketHub:
    """The hub of the running event loop (one per process in production; tests may run several loops)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None or hub.layer is not get_channel_layer():
        for key in [k for k in _hubs if k != id(loop)]:
            # Hubs of finished loops (tests) are dropped; their tasks died with their loop.
            del _hubs[key]
        hub = _hubs[id(loop)] = MarketHub()
    return hub
