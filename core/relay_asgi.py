"""ASGI fast path for the embedded-mode realtime relay (see core/realtime.py and core/views.realtime_relay).

Every live market update from the collector crosses this endpoint in embedded mode, ten times a second per
market. Served through Django it would pass a dozen middlewares, each hopping to the sync thread and
back; here it is handled directly on the event loop with the same checks (loopback peer, HMAC token, POST,
JSON list of ``{"group", "message"}``). Every other request goes to the wrapped application unchanged.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from channels.layers import get_channel_layer
from django.conf import settings

from core.realtime import RELAY_HEADER, relay_taps_run, relay_token

_LOOPBACK = {"127.0.0.1", "::1"}
_MAX_BODY = 8 * 1024 * 1024
_HEADER = RELAY_HEADER.lower().encode()


class RealtimeRelayFastPath:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.path = urlsplit(settings.REALTIME_RELAY_URL).path or "/internal/realtime/"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.inner(scope, receive, send)
            return
        status = await self._handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _handle(self, scope: dict[str, Any], receive: Any) -> int:
        if scope.get("method") != "POST":
            return 405
        client = scope.get("client") or ("", 0)
        token = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == _HEADER), "")
        if client[0] not in _LOOPBACK or not hmac.compare_digest(token, relay_token()):
            return 403
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:
                return 413
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            items = json.loads(b"".join(chunks))
            layer = get_channel_layer()
            for item in items:
                message = dict(item["message"])
                relay_taps_run(message)
                await layer.group_send(str(item["group"]), message)
        except (ValueError, KeyError, TypeError, RecursionError):
            return 400
        return 204
