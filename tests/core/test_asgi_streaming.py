"""Streamed responses under ASGI (issue 12): static files (WhiteNoise) and file responses stream through an
asynchronous iterator, so Django no longer warns "StreamingHttpResponse must consume synchronous iterators"
(and no longer reads each file whole into memory first)."""

from __future__ import annotations

import asyncio
import io
import warnings
from pathlib import Path
from typing import Any

from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http import FileResponse
from django.test import Client

from core.streaming import asgi_streaming

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static" / "css" / "site.css"


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def _asgi_get(path: str) -> tuple[int, bytes]:
    messages: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await ASGIHandler()(_scope(path), receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


def test_a_static_file_under_asgi_streams_without_the_synchronous_iterator_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, body = asyncio.run(_asgi_get("/static/css/site.css"))
    assert status == 200 and body == STATIC.read_bytes()
    assert not [w for w in caught if "synchronous iterators" in str(w.message)], [
        str(w.message) for w in caught
    ]


def test_a_file_response_becomes_asynchronous_under_asgi_only() -> None:
    asgi_request = ASGIRequest(_scope("/x"), io.BytesIO())
    response = asgi_streaming(asgi_request, FileResponse(STATIC.open("rb")))
    assert response.is_async

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    assert asyncio.run(read()) == STATIC.read_bytes()
    response.close()
    # WSGI (and the test client) keep the plain synchronous file response.
    wsgi = Client().get("/static/css/site.css")
    assert wsgi.status_code == 200 and not wsgi.is_async
    assert b"".join(wsgi.streaming_content) == STATIC.read_bytes()
