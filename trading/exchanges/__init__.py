"""Exchange implementations behind one interface: ``exchange_for(user=..., mode=...)``."""

from __future__ import annotations

from typing import Any

from trading.exchanges.base import Exchange


def exchange_for(*, user: Any, mode: str) -> Exchange:
    """The user's exchange in ``mode``: the paper exchange, or Upbit with the user's decrypted keys."""
    if mode == "live":
        from accounts.selectors import exchange_credentials_get
        from trading.errors import KeysMissing
        from trading.exchanges.upbit import UpbitExchange

        try:
            keys = exchange_credentials_get(user=user)
        except Exception as exc:  # noqa: BLE001 - unreadable keys (rotated encryption key) = no usable keys
            raise KeysMissing() from exc
        if keys is None:
            raise KeysMissing()
        return UpbitExchange(access_key=keys[0], secret_key=keys[1])
    from trading.exchanges.paper import PaperExchange

    return PaperExchange(user)
