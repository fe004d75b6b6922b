"""The real thing: the ASGI server (uvicorn subprocess) on the test database and the simulator; a browser-like
WebSocket client on /ws/user/ (session cookie) sees the order it placed over the REST API (token auth)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.trading.test_scheduled import sim_env  # noqa: F401 - fixture: child processes use the simulator

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_order_placed_over_http_is_pushed_to_the_users_socket(user, sim_env, asgi_server):  # noqa: F811
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value
    token = Token.objects.create(user=user).key
    ws_url = asgi_server.replace("http://", "ws://") + "/ws/user/"

    async def scenario() -> tuple[dict, dict, dict]:
        headers = {"Cookie": f"sessionid={session}"}
        async with websockets.connect(
            ws_url, additional_headers=headers, origin=asgi_server, open_timeout=10
        ) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            async with httpx.AsyncClient(base_url=asgi_server, timeout=10) as http:
                r = await http.post(
                    "/api/trading/orders/buy/",
                    json={"market": "KRW-BTC", "amount_krw": "10000"},
                    headers={"Authorization": f"Token {token}", "Idempotency-Key": "ws-e2e-1"},
                )
                assert r.status_code == 201, r.text
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return hello, event, r.json()

    hello, event, body = asyncio.run(scenario())
    assert hello == {"type": "hello", "data": {"mode": "paper", "resync": True}}
    assert event["type"] == "order" and event["data"]["order"]["id"] == body["order"]["id"]
    assert event["data"]["order"]["state"] == "done"


def test_socket_without_a_session_is_refused(asgi_server):
    ws_url = asgi_server.replace("http://", "ws://") + "/ws/user/"

    async def scenario() -> int | None:
        try:
            async with websockets.connect(ws_url, origin=asgi_server, open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return None

    assert asyncio.run(scenario()) == 4401


@pytest.mark.parametrize("path", ["/ws/nope/", f"/ws/market/KRW-{'X' * 37}/", "/ws/user/extra/"])
def test_unknown_socket_paths_are_closed_not_500(asgi_server, path):
    ws_url = asgi_server.replace("http://", "ws://") + path

    async def scenario() -> int | None:
        try:
            async with websockets.connect(ws_url, origin=asgi_server, open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return None

    assert asyncio.run(scenario()) in (4404, 4400)
