"""WebSocket plumbing shared by every socket: refusals the page can read, frames that never crash a socket.

Browsers do not expose the HTTP status of a refused handshake, only a bare close (1006). So a refusal is an
accept followed by a close with one of the documented application codes below; the page reads the code.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils.translation import gettext_lazy as _

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


class NotFoundConsumer(SafeJsonConsumer):
    """The last WebSocket route: any other path is accepted and closed with 4404 (not an HTTP 500)."""

    async def connect(self) -> None:
        await self.refuse(CLOSE_NOT_FOUND)
