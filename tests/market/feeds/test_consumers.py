"""market.consumers through channels' WebsocketCommunicator: snapshot, live updates, latest-wins throttling,
market switching, predictions, bad input."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from unittest.mock import ANY

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from market.routing import websocket_urlpatterns

pytestmark = pytest.mark.usefixtures("fake_upbit")


def _app() -> URLRouter:
    return URLRouter(websocket_urlpatterns)


async def _connect(code: str = "KRW-BTC") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(_app(), f"/ws/market/{code}/")
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


async def _recv(comm: WebsocketCommunicator, timeout: float = 3.0) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=timeout))


async def _drain(comm: WebsocketCommunicator, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every frame until the socket is quiet for ``quiet`` s (receive_nothing never cancels the app)."""
    frames = []
    while not await comm.receive_nothing(timeout=quiet, interval=0.01):
        frames.append(await _recv(comm))
    return frames


def _book(ts: int, bid: int = 100_000_000) -> dict[str, Any]:
    return {
        "market": "KRW-BTC",
        "ts": ts,
        "asks": [[bid + 1000, 1.0, 1.0]],
        "bids": [[bid, 2.0, 2.0]],
        "total_ask_size": 1.0,
        "total_bid_size": 2.0,
        "spread": 1000,
        "mid": bid + 500,
    }


def test_connect_sends_a_rest_snapshot_then_live_updates() -> None:
    async def scenario() -> None:
        comm = await _connect()
        snap = await _recv(comm)
        assert snap["type"] == "snapshot" and snap["market"] == "KRW-BTC"
        data = snap["data"]
        assert data["stale"] is False
        # From the fake Upbit REST answer, converted to the live payload shapes.
        assert data["orderbook"]["asks"][0] == [149001000, 1.0, 1.0]
        assert data["orderbook"]["bids"][1] == [148999000, 1.5, 4.0]
        assert data["ticker"]["price"] == 149000000 and data["ticker"]["change"] == "RISE"
        assert [t["sid"] for t in data["trades"]] == [1, 2]  # oldest first

        layer = get_channel_layer()
        await layer.group_send("market.KRW-BTC", {"type": "market.orderbook", "data": _book(42)})
        frame = await _recv(comm)
        assert frame == {"type": "orderbook", "market": "KRW-BTC", "data": _book(42)}
        await layer.group_send(
            "market.KRW-BTC",
            {
                "type": "market.trade",
                "data": {
                    "market": "KRW-BTC",
                    "trades": [{"ts": 1, "price": 5, "volume": 1, "side": "BID", "sid": 9}],
                },
            },
        )
        frame = await _recv(comm)
        assert frame["type"] == "trade" and frame["data"]["trades"][0]["sid"] == 9
        await comm.disconnect()

    asyncio.run(scenario())


def test_second_client_gets_the_cached_live_state_as_snapshot(fake_upbit) -> None:  # noqa: ANN001
    async def scenario() -> None:
        first = await _connect()
        await _recv(first)
        hits = len(fake_upbit.hits)
        await get_channel_layer().group_send(
            "market.KRW-BTC", {"type": "market.orderbook", "data": _book(77)}
        )
        await _recv(first)
        second = await _connect()
        snap = await _recv(second)
        assert snap["data"]["orderbook"]["ts"] == 77
        assert len(fake_upbit.hits) == hits  # served from the process cache, not REST
        await first.disconnect()
        await second.disconnect()

    asyncio.run(scenario())


def test_burst_of_100_updates_reaches_the_browser_throttled_latest_wins(settings) -> None:  # noqa: ANN001
    settings.MARKET_WS_THROTTLE_MS = 100

    async def scenario() -> None:
        comm = await _connect()
        await _recv(comm)
        layer = get_channel_layer()
        start = time.monotonic()
        for i in range(100):
            await layer.group_send(
                "market.KRW-BTC", {"type": "market.orderbook", "data": _book(i, 10**8 + i)}
            )
        frames = await _drain(comm, quiet=0.4)
        books = [f for f in frames if f["type"] == "orderbook"]
        assert 1 <= len(books) <= 4, [b["data"]["ts"] for b in books]
        assert books[-1]["data"]["ts"] == 99
        assert time.monotonic() - start < 3
        await comm.disconnect()

    asyncio.run(scenario())


def test_subscribe_switches_market_and_predictions_are_forwarded() -> None:
    async def scenario() -> None:
        comm = await _connect()
        await _recv(comm)
        await comm.send_json_to({"type": "subscribe", "data": {"market": "krw-eth"}})
        snap = await _recv(comm)
        assert snap["type"] == "snapshot" and snap["market"] == "KRW-ETH"
        assert snap["data"]["ticker"]["market"] == "KRW-ETH"
        layer = get_channel_layer()
        await layer.group_send("market.KRW-BTC", {"type": "market.orderbook", "data": _book(1)})
        prediction = {"market": "KRW-ETH", "ts": 5, "predicted_return": 0.0012, "model_version": "v3"}
        await layer.group_send("market.KRW-ETH", {"type": "market.prediction", "data": prediction})
        frames = await _drain(comm)
        assert frames == [{"type": "prediction", "market": "KRW-ETH", "data": prediction}]  # nothing of BTC
        # The hub relays a higher app's kind without knowing its fields, and its latest is in the snapshot.
        await comm.send_json_to({"type": "subscribe", "data": {"market": "KRW-ETH"}})
        snap = await _recv(comm)
        assert snap["type"] == "snapshot" and snap["data"]["prediction"] == prediction
        # Names of the socket's own frames are never taken by a published kind.
        await layer.group_send("market.KRW-ETH", {"type": "market.snapshot", "data": {"x": 1}})
        await layer.group_send("market.KRW-ETH", {"type": "market.Bad Kind", "data": {"x": 1}})
        assert await _drain(comm) == []
        await comm.disconnect()

    asyncio.run(scenario())


def test_invalid_market_is_refused_and_bad_messages_get_an_error() -> None:
    async def scenario() -> None:
        # Accepted, then closed with the documented code: a browser cannot read a refused handshake's status.
        for path in ("/ws/market/BTC-ETH/", "/ws/market/KRW-NOPE/", f"/ws/market/KRW-{'A' * 37}/"):
            comm = WebsocketCommunicator(_app(), path)  # KRW-NOPE: well-formed but not listed by Upbit
            connected, _ = await comm.connect(timeout=5)
            assert connected
            assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4400}

        comm = await _connect()
        await _recv(comm)
        await comm.send_json_to({"type": "subscribe", "data": {"market": "KRW-NOPE"}})
        assert (await _recv(comm))["data"]["code"] == "invalid_market"
        await comm.send_json_to({"action": "subscribe", "market": "DROP TABLE"})
        assert (await _recv(comm))["data"]["code"] == "invalid_market"
        await comm.send_to(text_data="not json")
        assert (await _recv(comm))["data"]["code"] == "invalid_frame"
        await comm.send_json_to(["subscribe"])
        assert (await _recv(comm))["data"]["code"] == "invalid_action"
        # Deeply nested JSON (a RecursionError in the decoder) and binary frames keep the socket open.
        await comm.send_to(text_data="[" * 100_000 + "]" * 100_000)
        assert (await _recv(comm))["data"]["code"] == "invalid_frame"
        await comm.send_to(text_data="[" * 5000 + "]" * 5000)
        assert (await _recv(comm))["data"]["code"] == "invalid_frame"
        await comm.send_to(bytes_data=b"\x00\x01")
        assert (await _recv(comm))["data"]["code"] == "binary_frame"
        await comm.send_json_to({"type": "ping"})
        assert (await _recv(comm)) == {"type": "pong"}
        error = {"type": "error", "data": {"code": "invalid_action", "message": ANY}}
        await comm.send_json_to({"type": "zzz"})
        assert (await _recv(comm)) == error
        await comm.disconnect()

    asyncio.run(scenario())


def test_snapshot_is_marked_stale_when_upbit_is_unreachable(settings) -> None:  # noqa: ANN001
    from tests.live import free_port

    settings.UPBIT_REST_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario() -> None:
        comm = await _connect("KRW-XRP")
        snap = await _recv(comm)
        assert snap["data"]["stale"] is True and snap["data"]["orderbook"] is None
        await comm.disconnect()

    asyncio.run(scenario())


def test_many_browsers_share_one_channel_layer_subscription_per_process() -> None:
    from channels.layers import InMemoryChannelLayer

    async def scenario() -> None:
        layer = get_channel_layer()
        if not isinstance(layer, InMemoryChannelLayer):
            pytest.skip("inspects the in-memory layer's groups")
        comms = list(await asyncio.gather(*(_connect() for _ in range(5))))  # concurrent first subscribers
        for comm in comms:
            await _recv(comm)
        assert len(layer.groups["market.KRW-BTC"]) == 1  # the hub, not one channel per browser
        await layer.group_send("market.KRW-BTC", {"type": "market.orderbook", "data": _book(5)})
        for comm in comms:
            assert (await _recv(comm))["data"]["ts"] == 5
        for comm in comms:
            await comm.disconnect()
        assert not layer.groups.get("market.KRW-BTC")  # the last one leaving unsubscribes the process

    asyncio.run(scenario())


def test_a_slow_socket_never_builds_a_queue_it_gets_the_newest_state() -> None:
    from collections import deque

    from market.consumers import MarketConsumer

    async def scenario() -> list[str]:
        consumer = MarketConsumer()
        consumer.throttle = 0.0
        consumer._pending, consumer._pending_trades = {}, deque(maxlen=20)
        consumer._wake = asyncio.Event()
        unblock, sent = asyncio.Event(), []

        async def base_send(message: dict[str, Any]) -> None:  # a browser that stopped reading
            await unblock.wait()
            sent.append(message["text"])

        consumer.base_send = base_send
        sender = asyncio.create_task(consumer._send_loop())
        consumer.offer("orderbook", "book-0")
        await asyncio.sleep(0.01)  # the sender is now stuck sending book-0
        for i in range(1, 1001):
            consumer.offer("orderbook", f"book-{i}")
            consumer.offer("trade", f"trades-{i}")
        assert len(consumer._pending) == 1 and len(consumer._pending_trades) == 20  # bounded, whatever comes
        unblock.set()
        await asyncio.sleep(0.05)
        sender.cancel()
        return sent

    sent = asyncio.run(scenario())
    assert sent == ["book-0", "book-1000", *[f"trades-{i}" for i in range(981, 1001)]]


def test_the_old_action_frames_are_still_read_for_one_release() -> None:
    """Pages loaded before the envelope change send {"action": ...}; they work until the next release."""

    async def scenario() -> None:
        comm = await _connect()
        await _recv(comm)
        await comm.send_json_to({"action": "ping"})
        assert (await _recv(comm)) == {"type": "pong"}
        await comm.send_json_to({"action": "subscribe", "market": "KRW-ETH"})
        snap = await _recv(comm)
        assert snap["type"] == "snapshot" and snap["market"] == "KRW-ETH"
        await comm.disconnect()

    asyncio.run(scenario())
