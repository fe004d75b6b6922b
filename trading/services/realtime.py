"""Per-user realtime pushes (group ``user.<id>``), sent after the transaction commits.

With a shared (Redis) channel layer the messages leave from one long-lived background event loop per
process, so the request that placed an order does not wait for the push, and the layer keeps one
connection instead of building one per ``async_to_sync`` call. With the in-memory layer (embedded mode)
they are sent inline: that layer lives on the server's own loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from core.realtime import apublish_many, publish_many
from trading.messages import UserEvent, user_event_message

logger = logging.getLogger(__name__)
Messages = list[tuple[str, dict[str, Any]]]


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class _BackgroundSender:
    """One daemon thread running an event loop that sends queued messages in order."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Messages] | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._run, name="trading-realtime", daemon=True).start()
        if not self._ready.wait(timeout=5):
            raise RuntimeError("realtime sender did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._queue = asyncio.Queue()
        self._ready.set()
        while True:
            messages = await self._queue.get()
            try:
                await apublish_many(messages)
            except Exception:  # noqa: BLE001 - realtime is best effort; clients re-sync over REST
                logger.warning("user events not delivered", exc_info=True)

    def submit(self, messages: Messages) -> None:
        assert self._queue is not None
        self.loop.call_soon_threadsafe(self._queue.put_nowait, messages)


_sender: _BackgroundSender | None = None
_sender_lock = threading.Lock()


def _background_sender() -> _BackgroundSender | None:
    """The process's sender (a forked worker child builds its own), or None for the in-memory layer."""
    global _sender
    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        return None
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _BackgroundSender()
        return _sender


def _send_now(messages: Messages) -> None:
    try:
        sender = _background_sender()
        if sender is not None:
            sender.submit(messages)
        else:
            publish_many(messages)
    except Exception:  # noqa: BLE001 - a push must never fail the business operation behind it
        logger.warning("user events not delivered", exc_info=True)


def user_event_publish(*, user_id: int, event: UserEvent) -> None:
    """Queue ``event`` for the user's sockets on commit (``{"type": event.kind, "data": {fields}}`` there).

    Best effort: the channel layer delivers at most once; the browser re-syncs over REST on reconnect."""
    user_events_publish(user_id=user_id, events=[event])


def user_events_publish(*, user_id: int, events: Sequence[UserEvent]) -> None:
    """Several events of one user, in order, after the transaction commits (a non-event raises at once)."""
    group = user_group(user_id)
    messages = [(group, {"type": "user.event", "data": user_event_message(e)}) for e in events]
    transaction.on_commit(lambda: _send_now(messages))
