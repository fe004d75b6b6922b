"""The relay fast path (core/relay_asgi.py) that every embedded-mode live update crosses: same checks as
the Django view (loopback, HMAC token, POST, JSON), delivery into the channel layer, the rest passed on."""

from __future__ import annotations

import asyncio
import json

from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator

from core.realtime import RELAY_HEADER, relay_token
from core.relay_asgi import RealtimeRelayFastPath


async def _inner(scope, receive, send) -> None:  # noqa: ANN001
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"django"})


def _call(
    method: str, path: str, body: bytes = b"", token: str | None = None, client: str = "127.0.0.1"
) -> int:
    async def run() -> int:
        headers = [(RELAY_HEADER.lower().encode(), token.encode())] if token is not None else []
        comm = HttpCommunicator(RealtimeRelayFastPath(_inner), method, path, body=body, headers=headers)
        comm.scope["client"] = (client, 5000)
        response = await comm.get_response(timeout=5)
        return int(response["status"])

    return asyncio.run(run())


def test_relay_fast_path_checks_and_delivers() -> None:
    body = json.dumps(
        [{"group": "market.KRW-BTC", "message": {"type": "market.ticker", "data": {"ts": 1}}}]
    ).encode()
    assert _call("GET", "/healthz") == 299  # everything else goes to Django
    assert _call("GET", "/internal/realtime/", token=relay_token()) == 405
    assert _call("POST", "/internal/realtime/", body, token="forged") == 403
    assert _call("POST", "/internal/realtime/", body, token=relay_token(), client="10.0.0.8") == 403
    assert _call("POST", "/internal/realtime/", b"{not json", token=relay_token()) == 400

    async def deliver() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("market.KRW-BTC", channel)
        comm = HttpCommunicator(
            RealtimeRelayFastPath(_inner),
            "POST",
            "/internal/realtime/",
            body=body,
            headers=[(RELAY_HEADER.lower().encode(), relay_token().encode())],
        )
        comm.scope["client"] = ("127.0.0.1", 5000)
        assert (await comm.get_response(timeout=5))["status"] == 204
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    assert asyncio.run(deliver()) == {"type": "market.ticker", "data": {"ts": 1}}
