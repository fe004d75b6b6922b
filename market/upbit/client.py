"""Upbit REST client (quotation + exchange): sync :class:`UpbitClient` and async :class:`AsyncUpbitClient`.

Both speak the same wire protocol (see ``shared/upbit-api.md``) through httpx:

* exchange calls carry a fresh HS256 JWT per request (``protocol.build_jwt``: UUID nonce, SHA-512 query hash
  of the unencoded parameter string); POST bodies are JSON with decimal strings;
* ``Remaining-Req`` is honoured per rate-limit group: when a group reports ``sec=0`` the next request of that
  group waits for the next second instead of earning a 429;
* 429/418/5xx/network errors back off exponentially with full jitter, a bounded number of times. An order
  POST is never blindly re-sent: after a failure that may have reached Upbit it is looked up by its
  ``identifier`` first and only re-sent when Upbit does not know it (without an identifier it is not retried);
* error bodies become the typed exceptions of :mod:`market.upbit.errors`; no key or token ever appears in an
  exception message or a log line.

No Django import: callers pass ``base_url`` (``settings.UPBIT_REST_URL``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from core.logging import register_secret
from market.upbit import protocol
from market.upbit.errors import (
    OrderNotFound,
    RateLimited,
    UpbitAuthError,
    UpbitError,
    UpbitUnavailable,
    error_from_response,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.upbit.com"
USER_AGENT = "OBservator/1.0"
Params = list[tuple[str, Any]]


# ----------------------------------------------------------------------------------------------------------
# Request description shared by the sync and async clients
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str  # relative to /v1
    group: str  # expected Remaining-Req group (learned from the answers too)
    params: Params = field(default_factory=list)
    body: dict[str, Any] | None = None
    auth: bool = False
    # "safe": may be repeated freely (GET); "cancel": DELETE, repeat after checking the order;
    # "order": POST /orders, repeat only after the identifier lookup says it was not placed.
    retry: str = "safe"


def _encode_query(params: Params) -> str:
    # Values percent-encoded (a raw ':' or '+' in a time is refused), array brackets in keys left as they are.
    return "&".join(f"{quote(k, safe='[]')}={quote(str(v), safe='')}" for k, v in params)


def _markets_param(markets: Sequence[str] | str) -> str:
    if isinstance(markets, str):
        return markets
    return ",".join(markets)


def _path_group(path: str) -> str:
    if path.startswith("/market/"):
        return "market"
    if path.startswith("/candles/"):
        return "candles"
    if path.startswith("/trades/"):
        return "trade"
    if path.startswith("/ticker"):
        return "ticker"
    if path.startswith("/orderbook"):
        return "orderbook"
    return "default"


def _q(method: str, path: str, params: Sequence[tuple[str, Any]] = ()) -> _Call:
    return _Call(method, path, _path_group(path), protocol.param_pairs(params))


CANDLE_UNITS = ("seconds", "minutes", "days", "weeks", "months", "years")
MINUTE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)


class _Calls:
    """The endpoint catalogue: each method returns the description of one request."""

    @staticmethod
    def markets(is_details: bool) -> _Call:
        return _q("GET", "/market/all", [("is_details", is_details)])

    @staticmethod
    def tickers(markets: Sequence[str] | str) -> _Call:
        return _q("GET", "/ticker", [("markets", _markets_param(markets))])

    @staticmethod
    def orderbooks(markets: Sequence[str] | str, count: int | None, level: int | str | None) -> _Call:
        return _q(
            "GET", "/orderbook", [("markets", _markets_param(markets)), ("level", level), ("count", count)]
        )

    @staticmethod
    def instruments(markets: Sequence[str] | str) -> _Call:
        return _q("GET", "/orderbook/instruments", [("markets", _markets_param(markets))])

    @staticmethod
    def trades(
        market: str, count: int, to: str | None, cursor: int | str | None, days_ago: int | None
    ) -> _Call:
        return _q(
            "GET",
            "/trades/ticks",
            [("market", market), ("to", to), ("count", count), ("cursor", cursor), ("days_ago", days_ago)],
        )

    @staticmethod
    def candles(market: str, unit: str, minutes: int, count: int, to: dt.datetime | str | None) -> _Call:
        if unit not in CANDLE_UNITS:
            raise ValueError(f"candle unit must be one of {CANDLE_UNITS}, not {unit!r}")
        path = f"/candles/{unit}"
        if unit == "minutes":
            if minutes not in MINUTE_UNITS:
                raise ValueError(f"minute candles come in {MINUTE_UNITS}, not {minutes!r}")
            path = f"/candles/minutes/{minutes}"
        count = max(1, min(int(count), 200))
        return _q("GET", path, [("market", market), ("to", to), ("count", count)])

    @staticmethod
    def accounts() -> _Call:
        return _Call("GET", "/accounts", "default", auth=True)

    @staticmethod
    def order_chance(market: str) -> _Call:
        return _Call(
            "GET", "/orders/chance", "default", protocol.param_pairs([("market", market)]), auth=True
        )

    @staticmethod
    def place_order(
        market: str,
        side: str,
        ord_type: str,
        volume: Decimal | str | None,
        price: Decimal | str | None,
        identifier: str | None,
        time_in_force: str | None,
        smp_type: str | None,
    ) -> _Call:
        if side not in ("bid", "ask"):
            raise ValueError("side must be 'bid' or 'ask'")
        if ord_type not in ("limit", "price", "market", "best"):
            raise ValueError("ord_type must be one of limit, price, market, best")
        body: dict[str, Any] = {"market": market, "side": side}
        if volume is not None:
            body["volume"] = protocol.param_value(Decimal(volume) if isinstance(volume, str) else volume)
        if price is not None:
            body["price"] = protocol.param_value(Decimal(price) if isinstance(price, str) else price)
        body["ord_type"] = ord_type
        if time_in_force is not None:
            body["time_in_force"] = time_in_force
        if smp_type is not None:
            body["smp_type"] = smp_type
        if identifier is not None:
            body["identifier"] = identifier
        return _Call("POST", "/orders", "order", body=body, auth=True, retry="order")

    @staticmethod
    def get_order(uuid: str | None, identifier: str | None) -> _Call:
        if (uuid is None) == (identifier is None):
            raise ValueError("pass exactly one of uuid or identifier")
        return _Call(
            "GET",
            "/order",
            "default",
            protocol.param_pairs([("uuid", uuid), ("identifier", identifier)]),
            auth=True,
        )

    @staticmethod
    def cancel_order(uuid: str | None, identifier: str | None) -> _Call:
        if (uuid is None) == (identifier is None):
            raise ValueError("pass exactly one of uuid or identifier")
        params = protocol.param_pairs([("uuid", uuid), ("identifier", identifier)])
        return _Call("DELETE", "/order", "default", params, auth=True, retry="cancel")

    @staticmethod
    def open_orders(
        market: str | None, states: Sequence[str] | None, page: int, limit: int, order_by: str
    ) -> _Call:
        params = protocol.param_pairs(
            [("market", market), ("states", list(states) if states else None), ("page", page),
             ("limit", limit), ("order_by", order_by)]
        )  # fmt: skip
        return _Call("GET", "/orders/open", "default", params, auth=True)

    @staticmethod
    def closed_orders(
        market: str | None,
        states: Sequence[str] | None,
        start_time: dt.datetime | str | int | None,
        end_time: dt.datetime | str | int | None,
        limit: int,
        order_by: str,
    ) -> _Call:
        params = protocol.param_pairs(
            [("market", market), ("states", list(states) if states else None), ("start_time", start_time),
             ("end_time", end_time), ("limit", limit), ("order_by", order_by)]
        )  # fmt: skip
        return _Call("GET", "/orders/closed", "default", params, auth=True)


# ----------------------------------------------------------------------------------------------------------
# Shared machinery: rate gate, request building, response handling, backoff
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _GroupState:
    sec: int | None = None  # requests left in the current second, as last reported
    reset_at: float = 0.0  # monotonic time at which the current second ends


class RateGate:
    """Client-side view of Upbit's per-group per-second buckets, fed by ``Remaining-Req`` headers."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._groups: dict[str, _GroupState] = {}
        self._lock = threading.Lock()

    def delay(self, group: str) -> float:
        """Seconds to wait before sending a request of ``group`` (0 when the bucket has room)."""
        with self._lock:
            st = self._groups.get(group)
            if st is None or st.sec is None:
                return 0.0
            now = self._clock()
            if now >= st.reset_at:
                st.sec = None
                return 0.0
            if st.sec > 0:
                st.sec -= 1  # reserve our slot so concurrent callers do not all rush the last one
                return 0.0
            return st.reset_at - now

    def update(self, header: str | None) -> protocol.RemainingReq | None:
        rr = protocol.parse_remaining_req(header)
        if rr is None:
            return None
        with self._lock:
            # Buckets are counted per wall-clock second: the reported count is valid until the next one.
            wall = self._wall()
            until_next = 1.0 - (wall % 1.0) + 0.005
            st = self._groups.setdefault(rr.group, _GroupState())
            st.sec = rr.sec
            st.reset_at = self._clock() + until_next
            if rr.group == "candles":
                self._groups["candle"] = st
            elif rr.group == "candle":
                self._groups["candles"] = st
        return rr

    def remaining(self, group: str) -> int | None:
        with self._lock:
            st = self._groups.get(group)
            return None if st is None else st.sec


class _Base:
    def __init__(
        self,
        base_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        timeout: float,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        rng: random.Random | None,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self._access_key = access_key
        self._secret_key = secret_key
        if secret_key:
            register_secret(secret_key)
        if access_key:
            register_secret(access_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.gate = RateGate()
        self._rng = rng or random.Random()
        self._learned_groups: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the keys
        return f"{type(self).__name__}(base_url={self.base_url!r}, authenticated={bool(self._access_key)})"

    @property
    def authenticated(self) -> bool:
        return bool(self._access_key and self._secret_key)

    def _group(self, call: _Call) -> str:
        return self._learned_groups.get(call.method + call.path, call.group)

    def _build(self, call: _Call) -> tuple[str, dict[str, str], bytes | None]:
        url = self.base_url + call.path
        if call.params:
            url += "?" + _encode_query(call.params)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        content: bytes | None = None
        if call.body is not None:
            content = orjson.dumps(call.body)
            headers["Content-Type"] = "application/json; charset=utf-8"
        if call.auth:
            if not self.authenticated:
                raise UpbitAuthError("no_authorization_token", "this client has no API keys", 401)
            hashed: Any = call.body if call.body is not None else call.params
            token = protocol.build_jwt(
                self._access_key or "", self._secret_key or "", hashed or None, alg="HS256"
            )
            headers["Authorization"] = f"Bearer {token}"
        return url, headers, content

    def _handle(self, call: _Call, response: httpx.Response) -> Any:
        rr = self.gate.update(response.headers.get("Remaining-Req"))
        if rr is not None:
            self._learned_groups[call.method + call.path] = rr.group
        if 200 <= response.status_code < 300:
            try:
                return orjson.loads(response.content) if response.content else None
            except orjson.JSONDecodeError as exc:
                raise UpbitUnavailable(
                    "bad_response", "Upbit answered with a body that is not JSON", response.status_code
                ) from exc
        raise error_from_response(response.status_code, response.content, response.headers)

    def _backoff(self, attempt: int, error: UpbitError | None = None) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.backoff_cap * 4)
        base = self.backoff_base * (2**attempt)
        if isinstance(error, RateLimited) and error.status == 418:
            base *= 4  # a block: back off harder
        capped = min(self.backoff_cap, base)
        # Full jitter, never less than half the step, so synchronized clients spread out.
        return capped / 2 + self._rng.uniform(0, capped / 2)

    @staticmethod
    def _network_error(call: _Call, exc: httpx.HTTPError) -> UpbitUnavailable:
        # Only the exception type and the path: an httpx message could echo request details.
        return UpbitUnavailable("network_error", f"{type(exc).__name__} on {call.method} {call.path}", None)

    @staticmethod
    def _not_sent(exc: BaseException) -> bool:
        """True when the request certainly never reached the server (safe to send again)."""
        return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))

    @staticmethod
    def _retryable(error: UpbitError) -> bool:
        return isinstance(error, (RateLimited, UpbitUnavailable))

    def _next_try(self, call: _Call, attempt: int, failure: httpx.HTTPError | UpbitError) -> _NextTry:
        """The retry policy of both clients: after ``failure`` on try ``attempt``, how long to wait and what
        to read first; raises the error when the call must not be sent again.

        A request that certainly never reached Upbit (connect errors, 429/418) is sent again. One that may
        have been processed (a 5xx, a read timeout) is only retried when that is safe: an order is looked up
        by its identifier first (never placed twice; without an identifier it is not retried), a cancel is
        read back and done once the order shows ``cancel``."""
        if isinstance(failure, httpx.HTTPError):
            error: UpbitError = self._network_error(call, failure)
            maybe_processed = not self._not_sent(failure)
        else:
            if not self._retryable(failure):
                raise failure
            error = failure
            # 429/418 are refused before processing; a 5xx may or may not have been processed.
            maybe_processed = isinstance(failure, UpbitUnavailable)
        if attempt >= self.max_retries:
            raise error
        if maybe_processed and call.retry == "order":
            identifier = (call.body or {}).get("identifier")
            if not identifier:
                raise error  # cannot know whether it was placed: never send it twice
            return _NextTry(self._backoff(attempt, error), _Calls.get_order(None, identifier), None)
        if maybe_processed and call.retry == "cancel":
            params = dict(call.params)
            lookup = _Calls.get_order(params.get("uuid"), params.get("identifier"))
            return _NextTry(self._backoff(attempt, error), lookup, "cancel")
        logger.warning("upbit %s %s failed (%s), retrying", call.method, call.path, error.name)
        return _NextTry(self._backoff(attempt, error), None, None)


@dataclass(frozen=True)
class _NextTry:
    """What the retry policy decided: sleep ``wait`` s; with ``lookup``, read the order first and return it
    when found (in ``state`` if given) instead of sending the call again."""

    wait: float
    lookup: _Call | None
    state: str | None

    def settles(self, found: dict[str, Any] | None) -> bool:
        return found is not None and (self.state is None or found.get("state") == self.state)


# ----------------------------------------------------------------------------------------------------------
# Sync client
# ----------------------------------------------------------------------------------------------------------


class UpbitClient(_Base):
    """Blocking client (trading, Celery tasks, management commands). Thread-safe; reuse one per key pair."""

    def __init__(
        self,
        base_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 5.0,
        *,
        max_retries: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            base_url, access_key, secret_key, timeout, max_retries, backoff_base, backoff_cap, rng
        )
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UpbitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- machinery --
    def _send_once(self, call: _Call) -> Any:
        wait = self.gate.delay(self._group(call))
        if wait > 0:
            self._sleep(wait)
        url, headers, content = self._build(call)
        response = self._http.request(call.method, url, headers=headers, content=content)
        return self._handle(call, response)

    def _execute(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                return self._send_once(call)
            except (httpx.HTTPError, UpbitError) as exc:
                failure = exc
            step = self._next_try(call, attempt, failure)
            self._sleep(step.wait)
            attempt += 1
            if step.lookup is not None:
                found = self._lookup(step.lookup)
                if step.settles(found):
                    return found

    def _lookup(self, call: _Call) -> dict[str, Any] | None:
        try:
            return self._execute(call)
        except OrderNotFound:
            return None

    # -- quotation --
    def markets(self, is_details: bool = False) -> list[dict[str, Any]]:
        return self._execute(_Calls.markets(is_details))

    def tickers(self, markets: Sequence[str] | str) -> list[dict[str, Any]]:
        return self._execute(_Calls.tickers(markets))

    def orderbooks(
        self, markets: Sequence[str] | str, *, count: int | None = None, level: int | str | None = None
    ) -> list[dict[str, Any]]:
        return self._execute(_Calls.orderbooks(markets, count, level))

    def orderbook_instruments(self, markets: Sequence[str] | str) -> list[dict[str, Any]]:
        return self._execute(_Calls.instruments(markets))

    def trades(
        self, market: str, count: int = 1, *, to: str | None = None, cursor: int | str | None = None,
        days_ago: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        return self._execute(_Calls.trades(market, count, to, cursor, days_ago))

    def candles(
        self,
        market: str,
        unit: str,
        *,
        minutes: int = 1,
        count: int = 200,
        to: dt.datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        return self._execute(_Calls.candles(market, unit, minutes, count, to))

    # -- exchange --
    def accounts(self) -> list[dict[str, Any]]:
        return self._execute(_Calls.accounts())

    def order_chance(self, market: str) -> dict[str, Any]:
        return self._execute(_Calls.order_chance(market))

    def place_order(
        self, *, market: str, side: str, ord_type: str, volume: Decimal | str | None = None,
        price: Decimal | str | None = None, identifier: str | None = None, time_in_force: str | None = None,
        smp_type: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._execute(
            _Calls.place_order(market, side, ord_type, volume, price, identifier, time_in_force, smp_type)
        )

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        return self._execute(_Calls.get_order(uuid, identifier))

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        return self._execute(_Calls.cancel_order(uuid, identifier))

    def open_orders(
        self, *, market: str | None = None, states: Sequence[str] | None = None, page: int = 1,
        limit: int = 100, order_by: str = "desc",
    ) -> list[dict[str, Any]]:  # fmt: skip
        return self._execute(_Calls.open_orders(market, states, page, limit, order_by))

    def closed_orders(
        self, *, market: str | None = None, states: Sequence[str] | None = None,
        start_time: dt.datetime | str | int | None = None, end_time: dt.datetime | str | int | None = None,
        limit: int = 100, order_by: str = "desc",
    ) -> list[dict[str, Any]]:  # fmt: skip
        return self._execute(_Calls.closed_orders(market, states, start_time, end_time, limit, order_by))


# ----------------------------------------------------------------------------------------------------------
# Async client
# ----------------------------------------------------------------------------------------------------------


class AsyncUpbitClient(_Base):
    """asyncio twin of :class:`UpbitClient` (collector, feeds). Same methods, awaitable."""

    def __init__(
        self,
        base_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 5.0,
        *,
        max_retries: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        sleep: Callable[[float], Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            base_url, access_key, secret_key, timeout, max_retries, backoff_base, backoff_cap, rng
        )
        self._sleep = sleep or asyncio.sleep
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncUpbitClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send_once(self, call: _Call) -> Any:
        wait = self.gate.delay(self._group(call))
        if wait > 0:
            await self._sleep(wait)
        url, headers, content = self._build(call)
        response = await self._http.request(call.method, url, headers=headers, content=content)
        return self._handle(call, response)

    async def _execute(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                return await self._send_once(call)
            except (httpx.HTTPError, UpbitError) as exc:
                failure = exc
            step = self._next_try(call, attempt, failure)
            await self._sleep(step.wait)
            attempt += 1
            if step.lookup is not None:
                found = await self._lookup(step.lookup)
                if step.settles(found):
                    return found

    async def _lookup(self, call: _Call) -> dict[str, Any] | None:
        try:
            return await self._execute(call)
        except OrderNotFound:
            return None

    async def markets(self, is_details: bool = False) -> list[dict[str, Any]]:
        return await self._execute(_Calls.markets(is_details))

    async def tickers(self, markets: Sequence[str] | str) -> list[dict[str, Any]]:
        return await self._execute(_Calls.tickers(markets))

    async def orderbooks(
        self, markets: Sequence[str] | str, *, count: int | None = None, level: int | str | None = None
    ) -> list[dict[str, Any]]:
        return await self._execute(_Calls.orderbooks(markets, count, level))

    async def orderbook_instruments(self, markets: Sequence[str] | str) -> list[dict[str, Any]]:
        return await self._execute(_Calls.instruments(markets))

    async def trades(
        self, market: str, count: int = 1, *, to: str | None = None, cursor: int | str | None = None,
        days_ago: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        return await self._execute(_Calls.trades(market, count, to, cursor, days_ago))

    async def candles(
        self,
        market: str,
        unit: str,
        *,
        minutes: int = 1,
        count: int = 200,
        to: dt.datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        return await self._execute(_Calls.candles(market, unit, minutes, count, to))

    async def accounts(self) -> list[dict[str, Any]]:
        return await self._execute(_Calls.accounts())

    async def order_chance(self, market: str) -> dict[str, Any]:
        return await self._execute(_Calls.order_chance(market))

    async def place_order(
        self, *, market: str, side: str, ord_type: str, volume: Decimal | str | None = None,
        price: Decimal | str | None = None, identifier: str | None = None, time_in_force: str | None = None,
        smp_type: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await self._execute(
            _Calls.place_order(market, side, ord_type, volume, price, identifier, time_in_force, smp_type)
        )

    async def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        return await self._execute(_Calls.get_order(uuid, identifier))

    async def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        return await self._execute(_Calls.cancel_order(uuid, identifier))

    async def open_orders(
        self, *, market: str | None = None, states: Sequence[str] | None = None, page: int = 1,
        limit: int = 100, order_by: str = "desc",
    ) -> list[dict[str, Any]]:  # fmt: skip
        return await self._execute(_Calls.open_orders(market, states, page, limit, order_by))

    async def closed_orders(
        self, *, market: str | None = None, states: Sequence[str] | None = None,
        start_time: dt.datetime | str | int | None = None, end_time: dt.datetime | str | int | None = None,
        limit: int = 100, order_by: str = "desc",
    ) -> list[dict[str, Any]]:  # fmt: skip
        return await self._execute(
            _Calls.closed_orders(market, states, start_time, end_time, limit, order_by)
        )
