"""Exchange implementations behind one interface: ``exchange_for(user=..., mode=...)``.

Live exchanges (the user's decrypted keys inside an ``UpbitClient``) are kept per user in this process for
``LIVE_EXCHANGE_TTL`` seconds, so an order does not read and decrypt the keys on every request. An entry is
dropped when the user's keys are saved or deleted (``ExchangeCredential`` post_save/post_delete, wired in
``TradingConfig.ready``): locally at once, and in every other process through a version stamp in the shared
cache that each use compares. Keys are never logged.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import caches

from accounts.selectors import exchange_credentials_get
from trading.errors import KeysMissing
from trading.exchanges.base import Exchange
from trading.exchanges.paper import PaperExchange
from trading.exchanges.upbit import UpbitExchange

LIVE_EXCHANGE_TTL = 60.0
_MAX_LIVE = 512
_live: dict[int, tuple[str, str, float, Exchange]] = {}  # user id -> (url, version, expires, exchange)
_live_lock = threading.Lock()


def _keys_version_key(user_id: int) -> str:
    return f"trading:keys-version:{user_id}"


def _keys_version(user_id: int) -> str:
    key = _keys_version_key(user_id)
    shared = caches["shared"]  # every process (web, worker pool processes) sees one version
    version = shared.get(key)
    if version is None:
        shared.add(key, uuid.uuid4().hex, None)
        version = shared.get(key) or ""
    return str(version)


def live_exchange_forget(*, user_id: int) -> None:
    """Drop the cached live exchange of a user, here and (via the version stamp) in every process."""
    with _live_lock:
        _live.pop(user_id, None)
    caches["shared"].set(_keys_version_key(user_id), uuid.uuid4().hex, None)


def credential_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Signal receiver: the user's stored keys were saved, rotated or deleted."""
    live_exchange_forget(user_id=instance.user_id)


def exchange_for(*, user: Any, mode: str) -> Exchange:
    """The user's exchange in ``mode``: the paper exchange, or Upbit with the user's decrypted keys."""
    if mode == "live":
        version = _keys_version(user.pk)
        url = settings.UPBIT_REST_URL
        now = time.monotonic()
        with _live_lock:
            hit = _live.get(user.pk)
        if hit is not None and hit[0] == url and hit[1] == version and hit[2] > now:
            return hit[3]
        exchange = _live_exchange_build(user)
        with _live_lock:
            _live[user.pk] = (url, version, now + LIVE_EXCHANGE_TTL, exchange)
            while len(_live) > _MAX_LIVE:
                _live.pop(next(iter(_live)))
        return exchange

    return PaperExchange(user)


def _live_exchange_build(user: Any) -> Exchange:
    try:
        keys = exchange_credentials_get(user=user)
    except Exception as exc:  # noqa: BLE001 - unreadable keys (rotated encryption key) = no usable keys
        raise KeysMissing() from exc
    if keys is None:
        raise KeysMissing()
    return UpbitExchange(access_key=keys[0], secret_key=keys[1])
