"""WebSocket plumbing shared by every socket: refusals the page can read, frames that never crash a socket.

Browsers do not expose the HTTP status of a refused handshake, only a bare close (1006). So a refusal is an
accept followed by a close with one of the documented application codes below; the page reads the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)

CLOSE_INVALID_INPUT = 4400  # unknown market, malformed path
CLOSE_UNAUTHENTICATED = 4401  # no session (or it expired)
CLOSE_NOT_FOUND = 4404  # no WebSocket route at this path

# A frame that cannot be decoded into JSON of sane depth is answered, not fatal to the socket.
MAX_FRAME_CHARS = 64 * 1024


class FrameError(ValueError):
    """A frame that is not a JSON text frame the socket understands."""


class SafeJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON consumer whose malformed, binary, oversized or deeply nested frames get an error frame."""

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.frame_error("binary_frame", _("Binary frames are not supported; send JSON text."))
            return
        try:
            content = await self.decode_json(text_data)
        except FrameError as exc:
            await self.frame_error("invalid_frame", exc.args[0])
            return
        await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        if len(text_data) > MAX_FRAME_CHARS:
            raise FrameError(_("Frame too large (at most %(n)d characters).") % {"n": MAX_FRAME_CHARS})
        try:
            return json.loads(text_data)
        except RecursionError:
            raise FrameError(_("JSON nested too deeply.")) from None
        except ValueError:
            raise FrameError(_("Frame is not valid JSON.")) from None

    async def frame_error(self, code: str, message: Any) -> None:
        """Tell the client its frame was refused (``message`` is lazy: subclasses render it in the user's
        language)."""
        await self.send_json({"type": "error", "code": code, "message": str(message)})


def session_user_id(session_key: str | None) -> Any:
    """The id of the user a session still logs in, read afresh from the session store (None when the session
    was deleted, expired, or the password changed since): ``django.contrib.auth.get_user`` on a new store."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user.pk if user.is_authenticated else None


class SessionWatchMixin:
    """For a socket of a logged-in user: re-checks the session every ``WS_SESSION_RECHECK_S`` seconds (and on
    each ping) and closes with 4401 once it no longer logs this user in, so an open page learns that it was
    logged out (elsewhere, by an admin, by expiry) instead of staying "Live"."""

    _session_watch: asyncio.Task[None] | None = None

    def session_watch_start(self) -> None:
        self._session_watch = asyncio.ensure_future(self._session_watch_loop())

    def session_watch_stop(self) -> None:
        if self._session_watch is not None:
            self._session_watch.cancel()
            self._session_watch = None

    async def session_still_valid(self) -> bool:
        scope = self.scope  # type: ignore[attr-defined]
        user, session = scope.get("user"), scope.get("session")
        key = getattr(session, "session_key", None)
        try:
            user_id = await database_sync_to_async(session_user_id)(key)
        except Exception:  # a database or cache blip must not log anyone out (nor crash the socket)
            logger.warning("session re-check failed; keeping the socket open", exc_info=True)
            return True
        return user is not None and user_id is not None and user_id == user.pk

    async def session_check(self) -> bool:
        """False (and the socket closed with 4401) when the session is gone."""
        if await self.session_still_valid():
            return True
        task, self._session_watch = self._session_watch, None
        await self.close(code=CLOSE_UNAUTHENTICATED)  # type: ignore[attr-defined]
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        return False

    async def _session_watch_loop(self) -> None:
        interval = settings.WS_SESSION_RECHECK_S
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(interval)
                if not await self.session_check():
                    return


class NotFoundConsumer(SafeJsonConsumer):
    """The last WebSocket route: any other path is accepted and closed with 4404 (not an HTTP 500)."""

    async def connect(self) -> None:
        await self.refuse(CLOSE_NOT_FOUND)
