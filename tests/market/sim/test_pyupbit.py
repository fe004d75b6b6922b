"""Protocol faithfulness: the third-party pyupbit client works unchanged against the simulator.

pyupbit hard-codes ``https://api.upbit.com`` inside its functions, so the only change is at the transport:
``pyupbit.request_api.requests`` is replaced by a shim that sends the same requests to the simulator.
Everything else (its JWT building, query hashing, parameter encoding, response parsing, Remaining-Req
parsing) is pyupbit's own code.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import pytest
import pyupbit
import pyupbit.errors
import pyupbit.request_api
import pyupbit.websocket_api as wsapi
import requests
import websockets

from market.upbit_sim.server import SimConfig, SimulatorThread


class _Redirect:
    def __init__(self, base: str) -> None:
        self.base = base
        self.calls: list[str] = []

    def _go(self, method: str, url: str, **kw: Any) -> requests.Response:
        assert url.startswith("https://api.upbit.com/")
        self.calls.append(f"{method} {url[len('https://api.upbit.com') :]}")
        kw.setdefault("timeout", 10)
        return requests.request(method, self.base + url[len("https://api.upbit.com") :], **kw)

    def get(self, url: str, **kw: Any) -> requests.Response:
        return self._go("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> requests.Response:
        return self._go("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> requests.Response:
        return self._go("DELETE", url, **kw)


@pytest.fixture(scope="module")
def upbit_sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=["KRW-BTC", "KRW-ETH"], seed=21)) as sim:
        yield sim


@pytest.fixture
def redirect(upbit_sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch) -> _Redirect:
    shim = _Redirect(upbit_sim.rest_url)
    monkeypatch.setattr(pyupbit.request_api, "requests", shim)
    return shim


def test_pyupbit_market_data(redirect: _Redirect) -> None:
    assert pyupbit.get_tickers(fiat="KRW") == ["KRW-BTC", "KRW-ETH"]
    ob = pyupbit.get_orderbook("KRW-BTC")
    assert ob["market"] == "KRW-BTC" and len(ob["orderbook_units"]) == 30
    assert ob["orderbook_units"][0]["ask_price"] > ob["orderbook_units"][0]["bid_price"]
    price = pyupbit.get_current_price("KRW-BTC")
    assert isinstance(price, float) and price > 1_000_000
    both = pyupbit.get_current_price(["KRW-BTC", "KRW-ETH"])
    assert set(both) == {"KRW-BTC", "KRW-ETH"}
    days = pyupbit.get_ohlcv("KRW-BTC", interval="day", count=10)
    assert days is not None and len(days) == 10
    assert list(days.columns) == ["open", "high", "low", "close", "volume", "value"]
    assert (days["high"] >= days["low"]).all() and days.index.is_monotonic_increasing
    minutes = pyupbit.get_ohlcv("KRW-BTC", interval="minute1", count=5)
    assert minutes is not None and len(minutes) == 5
    week = pyupbit.get_ohlcv("KRW-ETH", interval="week", count=3)
    assert week is not None and len(week) == 3
    _, limit = pyupbit.get_orderbook("KRW-BTC", limit_info=True)
    assert limit["group"] == "orderbook" and 0 <= limit["sec"] < 10


def test_pyupbit_authenticated_round_trip(upbit_sim: SimulatorThread, redirect: _Redirect) -> None:
    acct = upbit_sim.create_account(krw="1000000", assets={"BTC": "0.01"})
    up = pyupbit.Upbit(acct["access_key"], acct["secret_key"])

    balances = up.get_balances()
    assert {b["currency"]: b["balance"] for b in balances} == {"KRW": "1000000", "BTC": "0.01"}
    assert up.get_balance("KRW") == 1_000_000.0

    buy = up.buy_market_order("KRW-BTC", 10000)
    assert buy is not None and "error" not in buy, buy
    assert buy["ord_type"] == "price" and buy["side"] == "bid"
    done = up.get_individual_order(buy["uuid"])
    assert done["state"] in ("done", "cancel") and float(done["executed_volume"]) > 0 and done["trades"]

    sell = up.sell_market_order("KRW-BTC", 0.0001)
    assert sell is not None and "error" not in sell, sell
    assert sell["state"] == "done" and sell["executed_volume"] == "0.0001"

    best_bid = pyupbit.get_orderbook("KRW-BTC")["orderbook_units"][0]["bid_price"]
    limit_price = int(best_bid * 0.9) // 1000 * 1000  # 10 % under the market, on the 1,000 KRW grid
    placed = up.buy_limit_order("KRW-BTC", limit_price, 0.001)
    assert placed is not None and "error" not in placed, placed
    assert placed["state"] == "wait" and placed["price"] == str(limit_price)
    krw_locked = up.get_balances()[0]["locked"]
    assert float(krw_locked) == pytest.approx(limit_price * 0.001 * 1.0005)
    open_orders = up.get_order("KRW-BTC")  # legacy GET /v1/orders?state=wait
    assert [o["uuid"] for o in open_orders] == [placed["uuid"]]
    cancelled = up.cancel_order(placed["uuid"])
    assert cancelled is not None and cancelled["uuid"] == placed["uuid"]
    assert up.get_individual_order(placed["uuid"])["state"] == "cancel"
    assert float(up.get_balances()[0]["locked"]) == 0

    # Errors reach pyupbit as Upbit error bodies its own error table maps to its exception classes.
    assert up.buy_market_order("KRW-BTC", 1000) is None  # pyupbit swallows the exception and returns None
    data = {"market": "KRW-BTC", "side": "bid", "price": "1000", "ord_type": "price"}
    with pytest.raises(pyupbit.errors.UnderMinTotalBid):
        pyupbit.request_api._send_post_request(
            "https://api.upbit.com/v1/orders", headers=up._request_headers(data), data=data
        )
    forged = pyupbit.Upbit(acct["access_key"], "wrong-secret")
    with pytest.raises(pyupbit.errors.JwtVerification):
        pyupbit.request_api._send_get_request(
            "https://api.upbit.com/v1/accounts", headers=forged._request_headers()
        )
    assert "POST /v1/orders" in redirect.calls and "DELETE /v1/order" in redirect.calls


class _Enough(Exception):
    pass


class _Queue:
    def __init__(self, n: int) -> None:
        self.items: list[Any] = []
        self.n = n

    def put(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) >= self.n:
            raise _Enough


def test_pyupbit_websocket_client_reads_the_stream(
    upbit_sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyupbit's own WebSocket loop (camelCase ``isOnlyRealtime``, ``bytes.decode``) against the simulator."""
    ws_base = upbit_sim.ws_url.removesuffix("/websocket/v1")
    shim = types.SimpleNamespace(
        connect=lambda uri, **kw: websockets.connect(uri.replace("wss://api.upbit.com", ws_base), **kw),
        ConnectionClosed=websockets.ConnectionClosed,
    )
    monkeypatch.setattr(wsapi, "websockets", shim)
    client = object.__new__(wsapi.WebSocketClient)
    client.type, client.codes, client.queue = "orderbook", ["KRW-BTC", "KRW-ETH"], _Queue(6)
    with pytest.raises(_Enough):
        asyncio.run(asyncio.wait_for(client.connect_socket(), timeout=20))
    msgs = client.queue.items
    assert {m["code"] for m in msgs} <= {"KRW-BTC", "KRW-ETH"}
    assert all(m["type"] == "orderbook" and m["stream_type"] == "REALTIME" for m in msgs)  # only realtime
    assert all(len(m["orderbook_units"]) == 30 for m in msgs)
