"""The web server's pooled handler (core/asgi_pool.py, issue 13): API requests run whole on a fixed set of
threads that keep their database connection between requests; pages still go through Django's handler, whose
per-request threads keep CONN_MAX_AGE (0: closed after each request)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.db.backends.signals import connection_created

from core.asgi_pool import PooledSyncASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def _scope(
    path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body_out


def _opened_connections(app: Any, scope: dict[str, Any], n: int) -> tuple[list[int], int]:
    opened: list[str] = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(threading.current_thread().name)

    connection_created.connect(count, weak=False)
    try:

        async def run() -> list[int]:
            return [(await _call(app, scope))[0] for _ in range(n)]

        statuses = asyncio.run(run())
    finally:
        connection_created.disconnect(count)
    return statuses, len(opened)


# A bad token: DRF looks it up in the database and answers 401, no rows needed.
BAD_TOKEN = [(b"authorization", b"Token " + b"0" * 40)]


def test_api_requests_reuse_one_connection_per_pool_thread() -> None:
    app = PooledSyncASGIHandler(paths=["/api/"], threads=1, conn_max_age=60)
    statuses, opened = _opened_connections(app, _scope("/api/trading/mode/", headers=BAD_TOKEN), 5)
    assert statuses == [401] * 5
    assert opened == 1  # one connection for five requests

    # The same requests through Django's own handler open (and close) a connection each time.
    statuses, opened = _opened_connections(ASGIHandler(), _scope("/api/trading/mode/", headers=BAD_TOKEN), 5)
    assert statuses == [401] * 5 and opened == 5


def test_pool_threads_only_keep_connections() -> None:
    app = PooledSyncASGIHandler(paths=["/api/"], threads=2, conn_max_age=60)
    asyncio.run(_call(app, _scope("/api/trading/mode/", headers=BAD_TOKEN)))
    seen = app._pool.submit(lambda: dict(connections["default"].settings_dict)).result()
    assert seen["CONN_MAX_AGE"] == 60 and seen["CONN_HEALTH_CHECKS"] is True
    assert connections["default"].settings_dict["CONN_MAX_AGE"] == 0  # this thread, and every other one


def test_paths_outside_the_pool_use_djangos_handler() -> None:
    app = PooledSyncASGIHandler(paths=["/api/"], threads=1, conn_max_age=60)
    status, _h, _b = asyncio.run(_call(app, _scope("/healthz")))
    assert status == 200
    assert app._pool._threads == set()  # type: ignore[attr-defined]  # never started: not an API path


def test_pooled_errors_and_bad_input_are_answers_not_crashes() -> None:
    app = PooledSyncASGIHandler(paths=["/api/"], threads=1, conn_max_age=60)
    nested = b"[" * 1000 + b"]" * 1000
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(nested)).encode())]
    status, hdrs, body = asyncio.run(_call(app, _scope("/api/accounts/token/", "POST", headers), nested))
    assert status == 400 and hdrs[b"Content-Type"] == b"application/json"
    status, hdrs, _b = asyncio.run(_call(app, _scope("/api/trading/mode/")))
    assert status == 401 and hdrs[b"WWW-Authenticate"] == b"Token"
    status, _h, _b = asyncio.run(_call(app, _scope("/api/nope/")))
    assert status == 404


def test_async_to_sync_in_a_pooled_view_runs_on_the_servers_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A push into the in-memory channel layer from a view (async_to_sync) must run on the loop that owns the
    layer's queues, as under sync_to_async, not on a new loop in a new thread."""
    from asgiref.sync import async_to_sync
    from django.http import HttpResponse

    app = PooledSyncASGIHandler(paths=["/api/"], threads=1, conn_max_age=60)
    seen: list[Any] = []

    async def current_loop() -> Any:
        return asyncio.get_running_loop(), threading.current_thread()

    def view(request: Any) -> HttpResponse:
        seen.append(async_to_sync(current_loop)())
        return HttpResponse(b"ok")

    monkeypatch.setattr(app._sync, "get_response", view)

    async def run() -> tuple[Any, Any]:
        status, _h, body = await _call(app, _scope("/api/anything/"))
        assert (status, body) == (200, b"ok")
        return asyncio.get_running_loop(), threading.current_thread()

    server = asyncio.run(run())
    assert seen == [server]


def test_a_push_from_a_pooled_view_reaches_the_servers_layer_without_holding_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-memory channel layer's push is handed to the server's loop: the request goes on at once (it
    used to wait for the loop) and the message still arrives, in order."""
    import time

    from channels.layers import InMemoryChannelLayer
    from django.http import HttpResponse

    from core import realtime

    layer = InMemoryChannelLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: layer)
    delivered: list[tuple[str, dict[str, Any]]] = []

    async def slow_group_send(group: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.5)  # a busy loop: a waiting view would be held this long
        delivered.append((group, message))

    monkeypatch.setattr(layer, "group_send", slow_group_send)
    app = PooledSyncASGIHandler(paths=["/api/"], threads=1, conn_max_age=60)
    held: list[float] = []

    def view(request: Any) -> HttpResponse:
        t0 = time.perf_counter()
        realtime.publish_many([("g", {"type": "a"}), ("g", {"type": "b"})])
        held.append(time.perf_counter() - t0)
        return HttpResponse(b"ok")

    monkeypatch.setattr(app._sync, "get_response", view)

    async def run() -> None:
        assert (await _call(app, _scope("/api/push/")))[0] == 200
        for _ in range(100):
            if len(delivered) == 2:
                break
            await asyncio.sleep(0.05)

    asyncio.run(run())
    assert held[0] < 0.25
    assert delivered == [("g", {"type": "a"}), ("g", {"type": "b"})]
