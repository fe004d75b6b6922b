"""Realtime push to Channels groups from any process.

With Redis the channel layer is shared and every process sends to it directly. In embedded mode the
layer is in-memory, i.e. per process: the web process owns it, and other processes (collector, Celery
workers — they set ``OBSERVATOR_ROLE``) POST their messages to the web process's loopback-only relay
endpoint, authenticated with an HMAC of SECRET_KEY, which forwards them into its layer.
The channel layer delivers at most once; clients re-sync over REST after a reconnect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from typing import Any

import httpx
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

RELAY_HEADER = "X-Observator-Relay"
_client_lock = threading.Lock()
_client: httpx.Client | None = None


def relay_token() -> str:
    return hmac.new(settings.SECRET_KEY.encode(), b"realtime-relay", hashlib.sha256).hexdigest()


def _must_relay() -> bool:
    role = os.environ.get("OBSERVATOR_ROLE", "")
    return role not in ("", "web") and isinstance(get_channel_layer(), InMemoryChannelLayer)


def _http() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(timeout=2.0)
        return _client


class _RelayState:
    """One warning when the relay stops taking pushes and one when it takes them again, not one a push
    (the collector pushes ten times a second a market: a web restart would flood the console)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._dropped = 0

    def failed(self, reason: str) -> None:
        with self._lock:
            self._dropped += 1
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        logger.warning("realtime relay unavailable (%s): live pushes dropped until it answers", reason)

    def succeeded(self) -> None:
        if self._down_since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            down_for, dropped = time.monotonic() - self._down_since, self._dropped
            self._down_since, self._dropped = None, 0
        logger.warning("realtime relay back after %.0f s (%d pushes dropped)", down_for, dropped)


_relay_state = _RelayState()

# Functions that see every message the relay delivers into this process's layer, by message type (the market
# app keeps the latest order book per market this way: paper fills read it instead of calling REST).
_relay_taps: dict[str, list[Any]] = {}


def relay_tap_add(*, message_type: str, fn: Any) -> None:
    """Call ``fn(message)`` for every relayed message of this type (on the event loop: keep it O(1))."""
    taps = _relay_taps.setdefault(message_type, [])
    if fn not in taps:
        taps.append(fn)


def relay_taps_run(message: dict[str, Any]) -> None:
    for fn in _relay_taps.get(str(message.get("type", "")), ()):
        try:
            fn(message)
        except Exception:  # noqa: BLE001 - a tap must never stop the relay
            logger.exception("realtime relay tap failed")


def publish_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send ``(group, message)`` pairs; each message is a Channels event dict with a ``type``."""
    if not messages:
        return
    if _must_relay():
        body = json.dumps([{"group": g, "message": m} for g, m in messages], default=str)
        try:
            response = _http().post(
                settings.REALTIME_RELAY_URL,
                content=body,
                headers={RELAY_HEADER: relay_token(), "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            # The web process may be restarting; realtime data is best-effort and re-synced by clients.
            _relay_state.failed(exc.__class__.__name__)
        else:
            if response.is_success:
                _relay_state.succeeded()
            else:
                _relay_state.failed(f"HTTP {response.status_code}")
        return
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop()
    if loop is not None and isinstance(layer, InMemoryChannelLayer):
        # On a web thread of this process's server (core/asgi_pool.py): hand the pushes to the loop that owns
        # the layer's queues and go on. At most once either way; waiting for the loop would only hold this
        # thread (and its request) for a few loop turns.
        asyncio.run_coroutine_threadsafe(_group_send_all(layer, messages), loop).add_done_callback(
            _log_failure
        )
        return
    for group, message in messages:
        async_to_sync(layer.group_send)(group, message)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop this sync thread serves (set by sync_to_async and core/asgi_pool.py), if any."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop if loop.is_running() else None


async def _group_send_all(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("realtime push failed", exc_info=future.exception())


def publish(group: str, message: dict[str, Any]) -> None:
    publish_many([(group, message)])


async def apublish_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Async variant for code already running in an event loop (collector, consumers)."""
    if not messages:
        return
    if _must_relay():
        await asyncio.to_thread(publish_many, messages)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    for group, message in messages:
        await layer.group_send(group, message)
