"""Public market WebSocket ``/ws/market/<CODE>/``: snapshot on subscribe, then live updates, latest wins.

Each connection holds at most one pending frame per kind (all trade batches since the last send, capped)
and a small sender task that sends them at most every ``MARKET_WS_THROTTLE_MS``; a slow browser therefore
never builds a queue, it just skips intermediate states. Frames use the envelope of both sockets
(:class:`core.messages.Frame`): ``{"type": "subscribe", "data": {"market": "KRW-ETH"}}`` switches market
(answered by a snapshot) and ``{"type": "ping"}`` is answered by ``{"type": "pong"}``; the old
``{"action": ...}`` forms are still read for one release. Server frames: see :mod:`market.hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from core.messages import client_frame, error_frame, frame
from core.websocket import SafeJsonConsumer
from market.hub import dumps, get_hub
from market.selectors import market_is_listed
from market.upbit.protocol import is_krw_market

logger = logging.getLogger(__name__)

CLOSE_INVALID_MARKET = 4400
_PENDING_TRADE_FRAMES = 20


def _language(scope: dict[str, Any]) -> str:
    """The browser's UI language (language cookie, else Accept-Language), for error messages."""
    candidates = [(scope.get("cookies") or {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            candidates += [part.split(";")[0].strip() for part in value.decode("latin-1").split(",")]
    for candidate in candidates:
        try:
            return str(translation.get_supported_language_variant(candidate))
        except LookupError:
            continue
    return str(settings.LANGUAGE_CODE)


async def _listed(code: str) -> bool:
    # Only listed markets: a stream of made-up codes must not turn into REST calls to Upbit (rate limits).
    if not is_krw_market(code):
        return False
    return await asyncio.to_thread(market_is_listed, code=code)


class MarketConsumer(SafeJsonConsumer):
    # No per-connection channel: the per-process hub is the only channel-layer subscriber (see market.hub).
    channel_layer_alias = "__market_hub_only__"

    market: str | None = None

    async def connect(self) -> None:
        code = str(self.scope["url_route"]["kwargs"].get("code", "")).upper()
        self.language = _language(self.scope)
        if not await _listed(code):
            await self.refuse(CLOSE_INVALID_MARKET)
            return
        self.throttle = max(0.0, float(settings.MARKET_WS_THROTTLE_MS) / 1000.0)
        self._pending: dict[str, str] = {}
        self._pending_trades: deque[str] = deque(maxlen=_PENDING_TRADE_FRAMES)
        self._wake = asyncio.Event()
        self._hub = get_hub()
        await self.accept()
        self._sender = asyncio.create_task(self._send_loop(), name=f"market-ws-sender-{code}")
        await self._switch(code)

    async def disconnect(self, code: int) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        if self.market is not None:
            await self._hub.unsubscribe(self.market, self)
            self.market = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        action, data = client_frame(content)
        if action == "subscribe":
            code = str(data.get("market", "")).upper()
            if not await _listed(code):
                await self._error(
                    "invalid_market", _("Unknown market; expected a KRW market such as KRW-BTC.")
                )
                return
            await self._switch(code)
        elif action == "ping":
            await self.send_json(frame("pong"))
        else:
            await self._error(
                "invalid_action", _('Expected {"type": "subscribe", "data": {"market": CODE}} or a ping.')
            )

    async def _error(self, code: str, message: Any) -> None:
        with translation.override(self.language):
            text = str(message)
        await self.send_json(error_frame(code, text))

    async def frame_error(self, code: str, message: Any) -> None:
        await self._error(code, message)

    # -- hub side -------------------------------------------------------------------------------------

    def offer(self, kind: str, frame: str) -> None:
        """Called by the hub for every event of the subscribed market; replaces the pending frame."""
        if kind == "trade":
            self._pending_trades.append(frame)
        else:
            self._pending[kind] = frame
        self._wake.set()

    async def _switch(self, code: str) -> None:
        old = self.market
        if old == code:
            await self._send_snapshot(code)
            return
        if old is not None:
            await self._hub.unsubscribe(old, self)
        # Drop frames of the previous market before anything of the new one can be sent.
        self._pending.clear()
        self._pending_trades.clear()
        self.market = code
        await self._hub.subscribe(code, self)
        await self._send_snapshot(code)

    async def _send_snapshot(self, code: str) -> None:
        snapshot = await self._hub.snapshot(code)
        if self.market != code:  # switched again while fetching
            return
        # The snapshot already contains everything offered so far; sending those frames again would
        # duplicate trades on the tape.
        self._pending.clear()
        self._pending_trades.clear()
        await self.send(text_data=dumps({"type": "snapshot", "market": code, "data": snapshot}))

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        send = self.base_send
        next_at = 0.0
        try:
            while True:
                await self._wake.wait()
                # Throttle: only sleep when this connection sent less than ``throttle`` ago (a steady 10 Hz
                # stream with a 50 ms throttle never sleeps: no timer per frame).
                wait = next_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._wake.clear()
                frames = list(self._pending.values())
                self._pending.clear()
                if self._pending_trades:
                    frames.extend(self._pending_trades)
                    self._pending_trades.clear()
                for frame in frames:
                    await send({"type": "websocket.send", "text": frame})
                next_at = loop.time() + self.throttle
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - socket gone: the disconnect handler cleans up
            logger.debug("market ws sender stopped: %s", exc.__class__.__name__)
