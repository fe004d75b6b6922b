"""``/ws/user/``: the logged-in user's own order, balance and auto-trading events (group ``user.<id>``).

Frames use the envelope of both sockets (:class:`core.messages.Frame`): ``{"type": <kind>, "data": {...}}``
with the kinds and fields of :mod:`trading.messages`; ``{"type": "ping"}`` is answered ``{"type": "pong"}``.
The channel layer delivers at most once: after a reconnect the browser re-reads state over REST; the
``hello`` frame says so and carries the current trading mode.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from core.messages import client_frame, error_frame, frame
from core.websocket import CLOSE_UNAUTHENTICATED, SafeJsonConsumer, SessionWatchMixin
from trading.messages import Hello, user_event_frame
from trading.services.realtime import user_group


class UserConsumer(SessionWatchMixin, SafeJsonConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        mode = await database_sync_to_async(_mode)(user)
        await self.send_json(frame("hello", Hello(mode=mode, resync=True)))
        self.session_watch_start()  # a session deleted server-side closes the socket with 4401

    async def disconnect(self, code: int) -> None:
        self.session_watch_stop()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        action, _data = client_frame(content)
        if action == "ping" and await self.session_check():
            await self.send_json(frame("pong"))

    async def frame_error(self, code: str, message: Any) -> None:
        await self.send_json(error_frame(code, str(message)))

    async def user_event(self, event: dict[str, Any]) -> None:
        await self.send_json(user_event_frame(event.get("data") or {}))


def _mode(user: Any) -> str:
    from trading.selectors import profile_get  # imports models; routing loads consumers early

    return str(profile_get(user=user).mode)
