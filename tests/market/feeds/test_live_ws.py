"""The real path: uvicorn subprocess + a real WebSocket client; updates published from this process (as the
collector would) reach the browser socket — through the web process's relay in embedded mode, through
Redis when REDIS_URL is set."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from core import realtime
from market.fanout import MarketFanout

pytestmark = pytest.mark.live


def _ws_url(base: str, code: str) -> str:
    return base.replace("http://", "ws://") + f"/ws/market/{code}/"


async def _recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))


async def _recv_type(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await _recv(ws, timeout=max(0.01, deadline - loop.time()))
        if frame["type"] == kind:
            return frame


def _book(ts: int) -> dict[str, Any]:
    return {
        "market": "KRW-BTC",
        "ts": ts,
        "asks": [[101, 1.0, 1.0]],
        "bids": [[100, 2.0, 2.0]],
        "total_ask_size": 1.0,
        "total_bid_size": 2.0,
        "spread": 1,
        "mid": 100.5,
    }


def _scenario(base: str) -> None:
    async def run() -> None:
        async with websockets.connect(_ws_url(base, "KRW-BTC"), origin=base, open_timeout=10) as ws:
            snap = await _recv(ws)
            assert snap["type"] == "snapshot" and snap["data"]["ticker"]["price"] == 149000000

            # 1. core.realtime.publish, as any process would.
            await asyncio.to_thread(
                realtime.publish, "market.KRW-BTC", {"type": "market.orderbook", "data": _book(123)}
            )
            frame = await _recv_type(ws, "orderbook")
            assert frame["data"] == _book(123)

            # 2. The collector's path: parsed Upbit updates -> MarketFanout -> apublish_many -> browser.
            async with MarketFanout(interval=0.05, levels=5) as fanout:
                fanout.trade(
                    {
                        "type": "trade",
                        "code": "KRW-BTC",
                        "trade_price": 149001000,
                        "trade_volume": 0.5,
                        "ask_bid": "BID",
                        "trade_timestamp": 1751608800999,
                        "sequential_id": 77,
                    }
                )
                frame = await _recv_type(ws, "trade")
            assert frame["data"]["trades"] == [
                {"ts": 1751608800999, "price": 149001000, "volume": 0.5, "side": "BID", "sid": 77}
            ]

        # A socket with a bad Origin is refused by the allowed-hosts validator.
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(
                _ws_url(base, "KRW-BTC"), origin="http://evil.example", open_timeout=10
            ):
                pass

    asyncio.run(run())


def test_update_published_by_another_process_reaches_the_browser_via_relay(
    fake_upbit,
    asgi_server: str,
    settings,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    if settings.REDIS_URL:
        pytest.skip("embedded (relay) mode only; the Redis variant covers REDIS_URL")
    monkeypatch.setenv("OBSERVATOR_ROLE", "collector")  # this process is not the web process: it relays
    settings.REALTIME_RELAY_URL = f"{asgi_server}/internal/realtime/"
    assert realtime._must_relay()
    _scenario(asgi_server)


def test_update_published_by_another_process_reaches_the_browser_via_redis(
    redis_url: str,
    fake_upbit,
    asgi_server: str,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("OBSERVATOR_ROLE", "collector")
    assert not realtime._must_relay()  # a shared Redis layer: publish directly
    _scenario(asgi_server)
