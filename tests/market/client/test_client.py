"""The real Upbit client against the simulator: quotation, exchange calls with JWT, typed errors, throttling,
backoff on 429, and the no-double-order rule for order POSTs."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from market.upbit import protocol
from market.upbit.client import AsyncUpbitClient, UpbitClient
from market.upbit.errors import (
    InvalidPriceUnit,
    MarketNotFound,
    OrderNotFound,
    RateLimited,
    UnderMinTotal,
    UpbitAuthError,
    UpbitError,
    UpbitUnavailable,
    error_from_response,
)
from market.upbit_sim.server import SimulatorThread


class RecordingTransport(httpx.BaseTransport):
    """Forwards to the real network transport, recording (method, path, status); can lose one answer."""

    def __init__(self, lose_response_of: str | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls: list[tuple[str, str, int]] = []
        self.lose_response_of = lose_response_of

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.calls.append((request.method, request.url.path, response.status_code))
        key = f"{request.method} {request.url.path}"
        if self.lose_response_of == key:
            self.lose_response_of = None
            # The request reached Upbit and was processed; only the answer is lost.
            raise httpx.ReadTimeout("timed out", request=request)
        return response


def _client(sim: SimulatorThread, account: dict[str, Any] | None = None, **kw: Any) -> UpbitClient:
    keys = {"access_key": account["access_key"], "secret_key": account["secret_key"]} if account else {}
    return UpbitClient(base_url=sim.rest_url, **keys, **kw)


def _bid_price(client: UpbitClient, level: int = 10) -> Decimal:
    units = client.orderbooks("KRW-BTC")[0]["orderbook_units"]
    return Decimal(str(int(units[level]["bid_price"])))


def test_quotation_endpoints_return_upbit_shapes(sim: SimulatorThread) -> None:
    with _client(sim) as client:
        codes = {m["market"] for m in client.markets()}
        assert {"KRW-BTC", "KRW-ETH"} <= codes
        ticker = client.tickers(["KRW-BTC", "KRW-ETH"])
        assert {t["market"] for t in ticker} == {"KRW-BTC", "KRW-ETH"}
        assert isinstance(ticker[0]["trade_price"], float)
        book = client.orderbooks("KRW-BTC")[0]
        units = book["orderbook_units"]
        assert len(units) == 30
        assert units[0]["ask_price"] > units[0]["bid_price"]
        assert protocol.is_on_tick(Decimal(str(units[0]["ask_price"])))
        assert len(client.orderbooks("KRW-BTC", count=5)[0]["orderbook_units"]) == 5
        minutes = client.candles("KRW-BTC", "minutes", minutes=1, count=3)
        assert 1 <= len(minutes) <= 3 and minutes[0]["unit"] == 1
        for unit in ("days", "weeks", "months"):
            candles = client.candles("KRW-BTC", unit, count=2)
            assert candles and candles[0]["market"] == "KRW-BTC"
        assert isinstance(client.trades("KRW-BTC", 5), list)
        with pytest.raises(ValueError):
            client.candles("KRW-BTC", "minutes", minutes=7)


def test_exchange_round_trip_with_jwt(sim: SimulatorThread, account: dict[str, Any]) -> None:
    with _client(sim, account) as client:
        balances = {a["currency"]: Decimal(a["balance"]) for a in client.accounts()}
        assert balances["KRW"] == Decimal("50000000")
        chance = client.order_chance("KRW-BTC")
        assert chance["bid_fee"] == "0.0005"
        price = _bid_price(client)
        order = client.place_order(
            market="KRW-BTC", side="bid", ord_type="limit", volume=Decimal("0.001"), price=price,
            identifier="client-round-trip-1",
        )  # fmt: skip
        assert order["state"] == "wait" and Decimal(order["price"]) == price
        assert client.get_order(identifier="client-round-trip-1")["uuid"] == order["uuid"]
        open_uuids = {o["uuid"] for o in client.open_orders(market="KRW-BTC", states=["wait", "watch"])}
        assert order["uuid"] in open_uuids
        client.cancel_order(uuid=order["uuid"])
        closed = client.closed_orders(market="KRW-BTC", states=["cancel"])
        assert order["uuid"] in {o["uuid"] for o in closed}


def test_upbit_errors_become_typed_exceptions(sim: SimulatorThread, account: dict[str, Any]) -> None:
    with _client(sim, account) as client:
        price = _bid_price(client)
        with pytest.raises(UnderMinTotal) as small:
            client.place_order(market="KRW-BTC", side="bid", ord_type="limit", volume="0.00001", price=price)
        assert small.value.name == "under_min_total_bid" and small.value.status == 400
        with pytest.raises(InvalidPriceUnit):
            client.place_order(
                market="KRW-BTC", side="bid", ord_type="limit", volume="0.001", price=price + 1
            )
        with pytest.raises(OrderNotFound):
            client.get_order(uuid="00000000-0000-4000-8000-000000000000")
        with pytest.raises(MarketNotFound) as missing:
            client.tickers("KRW-NOPE")
        assert missing.value.name == 404  # quotation errors carry the integer status as their name
    wrong = UpbitClient(
        base_url=sim.rest_url, access_key=account["access_key"], secret_key="not-the-secret-key"
    )
    with wrong, pytest.raises(UpbitAuthError) as auth:
        wrong.accounts()
    assert auth.value.name == "jwt_verification"
    with _client(sim) as anonymous, pytest.raises(UpbitAuthError):
        anonymous.accounts()


def test_error_mapping_tolerates_plain_text_429_and_5xx() -> None:
    err = error_from_response(429, b"Too many API requests.", {"Retry-After": "2"})
    assert isinstance(err, RateLimited) and err.retry_after == 2.0
    assert isinstance(error_from_response(418, b"", None), RateLimited)
    assert isinstance(error_from_response(502, b"<html>bad gateway</html>", None), UpbitUnavailable)
    named = error_from_response(400, b'{"error":{"name":"insufficient_funds_bid","message":"x"}}', None)
    assert named.name == "insufficient_funds_bid" and type(named).__name__ == "InsufficientFunds"
    # Branch on the name, not the status: out_of_scope is an auth error whatever the status.
    assert isinstance(error_from_response(403, b'{"error":{"name":"out_of_scope","message":""}}', None),
                      UpbitAuthError)  # fmt: skip


def test_remaining_req_throttles_instead_of_earning_429(sim: SimulatorThread) -> None:
    transport = RecordingTransport()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with _client(sim, transport=transport, sleep=sleep) as client:
        for _ in range(25):  # the ticker group allows 10 per second
            client.tickers("KRW-BTC")
    statuses = [status for _, _, status in transport.calls]
    assert statuses.count(200) == 25
    assert 429 not in statuses
    assert len(slept) >= 2  # it waited for the next second at least twice


def test_429_is_retried_with_backoff(sim: SimulatorThread) -> None:
    transport = RecordingTransport()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with _client(sim, transport=transport, sleep=sleep, backoff_base=0.3, max_retries=5) as client:
        client.gate.delay = lambda group: 0.0  # type: ignore[method-assign] # act like a client ignoring the header
        for _ in range(14):
            client.tickers("KRW-BTC")
    statuses = [status for _, _, status in transport.calls]
    assert 429 in statuses  # the simulator refused some with Upbit's plain-text 429 ...
    assert statuses.count(200) == 14  # ... and every call still succeeded after backing off
    assert slept and all(s > 0 for s in slept)

    with _client(sim, max_retries=0) as impatient:
        impatient.gate.delay = lambda group: 0.0  # type: ignore[method-assign]
        with pytest.raises(RateLimited) as limited:
            for _ in range(30):
                impatient.tickers("KRW-BTC")
    assert limited.value.status == 429


def test_lost_order_answer_is_looked_up_by_identifier_not_resent(
    sim: SimulatorThread, account: dict[str, Any]
) -> None:
    transport = RecordingTransport(lose_response_of="POST /v1/orders")
    with _client(sim, account, transport=transport, sleep=lambda s: None) as client:
        price = _bid_price(client, level=12)
        order = client.place_order(
            market="KRW-BTC",
            side="bid",
            ord_type="limit",
            volume="0.001",
            price=price,
            identifier="lost-answer-1",
        )
        assert order["identifier"] == "lost-answer-1"
        posts = [c for c in transport.calls if c[0] == "POST"]
        assert len(posts) == 1  # looked up by identifier, never sent twice
        assert ("GET", "/v1/order", 200) in transport.calls
        mine = [o for o in client.open_orders(market="KRW-BTC") if o.get("identifier") == "lost-answer-1"]
        assert len(mine) == 1


def test_order_without_identifier_is_not_blindly_retried(
    sim: SimulatorThread, account: dict[str, Any]
) -> None:
    transport = RecordingTransport(lose_response_of="POST /v1/orders")
    with _client(sim, account, transport=transport, sleep=lambda s: None) as client:
        price = _bid_price(client, level=13)
        before = len(client.open_orders(market="KRW-BTC"))
        with pytest.raises(UpbitUnavailable):
            client.place_order(market="KRW-BTC", side="bid", ord_type="limit", volume="0.001", price=price)
        assert len([c for c in transport.calls if c[0] == "POST"]) == 1
        assert len(client.open_orders(market="KRW-BTC")) == before + 1


def test_secrets_never_in_errors_or_logs(
    sim: SimulatorThread, account: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = account["secret_key"]
    with _client(sim, account) as client:
        assert secret not in repr(client)
        try:
            client.place_order(market="KRW-BTC", side="bid", ord_type="limit", volume="0.00001", price="1000")
        except UpbitError as exc:
            assert secret not in str(exc) and "Bearer" not in str(exc)
    dead = UpbitClient(base_url="http://127.0.0.1:9", access_key="ak-123456789", secret_key=secret,
                       max_retries=1, sleep=lambda s: None)  # fmt: skip
    with dead, pytest.raises(UpbitUnavailable) as down:
        dead.accounts()
    assert secret not in str(down.value)
    assert secret not in caplog.text and "eyJ" not in caplog.text


def test_async_client_matches_sync(sim: SimulatorThread, account: dict[str, Any]) -> None:
    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with AsyncUpbitClient(
            base_url=sim.rest_url, access_key=account["access_key"], secret_key=account["secret_key"]
        ) as client:
            book = await client.orderbooks(["KRW-BTC", "KRW-ETH"])
            accounts = await client.accounts()
            with pytest.raises(OrderNotFound):
                await client.get_order(identifier="never-placed")
            return book, accounts

    book, accounts = asyncio.run(run())
    assert {b["market"] for b in book} == {"KRW-BTC", "KRW-ETH"}
    assert any(a["currency"] == "KRW" for a in accounts)


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`RecordingTransport` (loses the answer of each listed call once)."""

    def __init__(self, *lose: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, int]] = []
        self.lose = set(lose)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.calls.append((request.method, request.url.path, response.status_code))
        key = f"{request.method} {request.url.path}"
        if key in self.lose:
            self.lose.discard(key)
            raise httpx.ReadTimeout("timed out", request=request)
        return response


def test_async_client_follows_the_same_retry_policy(sim: SimulatorThread, account: dict[str, Any]) -> None:
    """A lost order answer is looked up by identifier (one POST), a lost cancel answer is read back, an order
    without identifier is not retried: the rules of the sync client, from the one shared policy."""
    with _client(sim, account) as sync_client:
        price = _bid_price(sync_client, level=14)

    async def run() -> AsyncRecordingTransport:
        transport = AsyncRecordingTransport("POST /v1/orders", "DELETE /v1/order")
        async with AsyncUpbitClient(
            base_url=sim.rest_url, access_key=account["access_key"], secret_key=account["secret_key"],
            transport=transport, sleep=lambda s: asyncio.sleep(0),
        ) as client:  # fmt: skip
            order = await client.place_order(
                market="KRW-BTC", side="bid", ord_type="limit", volume="0.001", price=price,
                identifier="async-lost-1",
            )  # fmt: skip
            assert order["identifier"] == "async-lost-1"
            cancelled = await client.cancel_order(identifier="async-lost-1")
            assert cancelled["state"] == "cancel"
            transport.lose.add("POST /v1/orders")
            with pytest.raises(UpbitUnavailable):
                await client.place_order(
                    market="KRW-BTC", side="bid", ord_type="limit", volume="0.001", price=price
                )
        return transport

    transport = asyncio.run(run())
    posts = [c for c in transport.calls if c[0] == "POST"]
    assert len(posts) == 2  # one per order: neither was sent twice
    deletes = [c for c in transport.calls if c[0] == "DELETE"]
    assert len(deletes) == 1 and ("GET", "/v1/order", 200) in transport.calls


def _sim_params(method: str, url: str, body: bytes | None = None) -> list[tuple[str, Any]]:
    """The parameters the simulator reads from a request (its ``request_params``), without a server."""
    from unittest import mock
    from urllib.parse import urlsplit

    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request

    from market.upbit_sim.auth import request_params

    async def read() -> list[tuple[str, Any]]:
        payload = streams.StreamReader(
            mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
        )
        if body:
            payload.feed_data(body)
        payload.feed_eof()
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        return await request_params(make_mocked_request(method, path, payload=payload))

    return asyncio.run(read())


def test_client_and_simulator_render_and_hash_parameters_the_same_way() -> None:
    """One rendering (``protocol.param_pairs``): lists as ``states[]``, Decimals without exponent or trailing
    zeros, datetimes in ISO 8601, ``None`` left out - in the client's query string, JSON body and token and in
    the simulator's received parameters and token check alike."""
    import datetime as dt

    from market.upbit.client import _Calls

    client = UpbitClient("http://sim.test", "ak", "sk")
    closed = _Calls.closed_orders(None, ["done", "cancel"], dt.datetime(2026, 1, 1, 9), None, 10, "desc")
    url, headers, _ = client._build(closed)
    sim = _sim_params("GET", url)
    want = "states[]=done&states[]=cancel&start_time=2026-01-01T09:00:00+00:00&limit=10&order_by=desc"
    assert protocol.query_string_for_hash(closed.params) == protocol.query_string_for_hash(sim) == want
    protocol.verify_jwt(headers["Authorization"], secret_for={"ak": "sk"}.get, params=sim)

    order = _Calls.place_order(
        "KRW-BTC", "bid", "limit", Decimal("0.0100"), Decimal("9.5E+7"), None, None, None
    )
    _, headers, content = client._build(order)
    sim = _sim_params("POST", client.base_url + order.path, content)
    want = "market=KRW-BTC&side=bid&volume=0.01&price=95000000&ord_type=limit"
    assert protocol.query_string_for_hash(order.body) == protocol.query_string_for_hash(sim) == want
    protocol.verify_jwt(headers["Authorization"], secret_for={"ak": "sk"}.get, params=sim)

    # A body field sent as null: the simulator leaves it out, and so does the token's hash.
    body = {"market": "KRW-BTC", "identifier": None, "states": ["wait"], "volume": Decimal("1.50")}
    token = protocol.build_jwt("ak", "sk", body)
    sim = _sim_params("POST", "http://sim.test/v1/orders", b'{"market":"KRW-BTC","identifier":null,'
                      b'"states":["wait"],"volume":"1.5"}')  # fmt: skip
    assert protocol.query_string_for_hash(sim) == "market=KRW-BTC&states[]=wait&volume=1.5"
    assert protocol.verify_jwt(token, secret_for={"ak": "sk"}.get, params=sim)["query_hash"]
