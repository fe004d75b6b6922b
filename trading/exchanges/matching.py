"""Pure fill arithmetic for the paper exchange: walking order-book levels (no Django, no I/O).

Prices and sizes are ``Decimal``; volumes are truncated to Upbit's 8 decimals, never rounded up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from market.upbit.protocol import VOLUME_QUANTUM, quantize_volume

ZERO = Decimal(0)
KRW_QUANTUM = Decimal("0.00000001")
# Average prices are kept to 4 decimals: enough for any KRW price, and within the 15 significant digits
# SQLite (the embedded database) keeps exactly.
AVG_PRICE_QUANTUM = Decimal("0.0001")
Level = tuple[Decimal, Decimal]  # (price, size)
Fill = tuple[Decimal, Decimal]  # (price, volume)


def fee_for(funds: Decimal, fee_rate: Decimal) -> Decimal:
    """Upbit-style fee on a KRW amount, kept to 8 decimals."""
    return (funds * fee_rate).quantize(KRW_QUANTUM, rounding=ROUND_HALF_UP)


def walk_buy_funds(asks: Sequence[Level], funds: Decimal) -> list[Fill]:
    """Market buy spending at most ``funds`` KRW (fees extra): take asks best-first."""
    fills: list[Fill] = []
    left = funds
    for price, size in asks:
        if price <= 0 or size <= 0:
            continue
        vol = min(size, quantize_volume(left / price))
        if vol <= 0:
            break
        fills.append((price, vol))
        left -= price * vol
        if vol < size:  # this level had more than we could pay for: done
            break
    return fills


def walk_volume(
    levels: Sequence[Level], volume: Decimal, limit: Decimal | None = None, *, side: str
) -> list[Fill]:
    """Take ``volume`` from ``levels`` best-first (asks for a bid, bids for an ask), not past ``limit``."""
    fills: list[Fill] = []
    left = volume
    for price, size in levels:
        if left <= 0:
            break
        if price <= 0 or size <= 0:
            continue
        if limit is not None and ((side == "bid" and price > limit) or (side == "ask" and price < limit)):
            break
        vol = min(size, left)
        fills.append((price, vol))
        left -= vol
    return fills


def crossed_volume(levels: Iterable[Level], limit: Decimal, *, side: str) -> Decimal:
    """Opposite-side size at prices that cross a resting order's limit (the book moved through it)."""
    total = ZERO
    for price, size in levels:
        if price <= 0 or size <= 0:
            continue
        if (side == "bid" and price <= limit) or (side == "ask" and price >= limit):
            total += size
    return total


def traded_through_volume(trades: Iterable[tuple[Decimal, Decimal]], limit: Decimal, *, side: str) -> Decimal:
    """Public trade volume at or through a resting order's price: for a bid at P trades at <= P, for an
    ask at P trades at >= P."""
    total = ZERO
    for price, volume in trades:
        if (side == "bid" and price <= limit) or (side == "ask" and price >= limit):
            total += volume
    return total


def side_depth_funds(levels: Sequence[Level]) -> Decimal:
    return sum((p * s for p, s in levels if p > 0 and s > 0), ZERO)


def side_depth_volume(levels: Sequence[Level]) -> Decimal:
    return sum((s for p, s in levels if p > 0 and s > 0), ZERO)


__all__ = [
    "VOLUME_QUANTUM", "crossed_volume", "fee_for", "side_depth_funds", "side_depth_volume",
    "traded_through_volume", "walk_buy_funds", "walk_volume",
]  # fmt: skip
