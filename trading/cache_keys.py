"""Cache keys and lifetimes that the trading services (which fill or clear them) and the selectors (which
read them) share; it sits below both, so neither imports the other for a key."""

from __future__ import annotations

# Live balances come from Upbit at most once per this many seconds per user.
LIVE_BALANCES_TTL = 5


def live_balances_cache_key(user_id: int) -> str:
    return f"trading:live-balances:{user_id}"
