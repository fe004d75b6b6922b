"""Per-user realtime pushes (group ``user.<id>``), sent after the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from core.realtime import publish

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def user_event_publish(*, user_id: int, kind: str, data: dict[str, Any]) -> None:
    """Queue ``{"type": "user.event", "data": {"kind": kind, ...}}`` for the user's sockets on commit.

    Best effort: the channel layer delivers at most once; the browser re-syncs over REST on reconnect."""
    message = {"type": "user.event", "data": {"kind": kind, **data}}

    def _send() -> None:
        try:
            publish(user_group(user_id), message)
        except Exception:  # noqa: BLE001 - a push must never fail the business operation behind it
            logger.warning("user event %s for user %s not delivered", kind, user_id, exc_info=True)

    transaction.on_commit(_send)
