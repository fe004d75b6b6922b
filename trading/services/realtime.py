"""Per-user realtime pushes (group ``user.<id>``), sent after the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from core.realtime import publish_many

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def user_event_publish(*, user_id: int, kind: str, data: dict[str, Any]) -> None:
    """Queue ``{"type": "user.event", "data": {"kind": kind, ...}}`` for the user's sockets on commit.

    Best effort: the channel layer delivers at most once; the browser re-syncs over REST on reconnect."""
    user_events_publish(user_id=user_id, events=[(kind, data)])


def user_events_publish(*, user_id: int, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Several events of one user in one channel-layer round trip, after the transaction commits."""
    group = user_group(user_id)
    messages = [(group, {"type": "user.event", "data": {"kind": kind, **data}}) for kind, data in events]

    def _send() -> None:
        try:
            publish_many(messages)
        except Exception:  # noqa: BLE001 - a push must never fail the business operation behind it
            logger.warning("user events for user %s not delivered", user_id, exc_info=True)

    transaction.on_commit(_send)
