"""Upbit's order rules (§7) as one pure check: the volume grid, the KRW tick grid for limit prices, and the
minimum/maximum order totals. The simulator's engine, the paper exchange and the order service's
pre-check all ask this module and map the Upbit error name it returns to their own error types."""

from __future__ import annotations

from decimal import Decimal

from market.upbit.protocol import (
    KRW_TICK_TABLE,
    MAX_ORDER_TOTAL_KRW,
    MIN_ORDER_TOTAL_KRW,
    TickTable,
    is_on_tick,
    quantize_volume,
)

__all__ = [
    "order_grid_error",
    "order_rule_error",
    "order_total",
    "order_total_error",
    "volume_on_grid",
]


def volume_on_grid(volume: Decimal) -> bool:
    """At most 8 decimal places (Upbit's volume unit)."""
    return quantize_volume(volume) == volume


def order_total(*, ord_type: str, price: Decimal | None, volume: Decimal | None) -> Decimal | None:
    """The KRW total an order's own parameters fix: a limit's price x volume, a market buy's amount; a
    market sell's total needs the book (None)."""
    if ord_type == "limit" and price is not None and volume is not None:
        return price * volume
    if ord_type == "price":
        return price
    return None


def order_grid_error(
    *,
    side: str,
    ord_type: str,
    price: Decimal | None,
    volume: Decimal | None,
    tick_table: TickTable = KRW_TICK_TABLE,
) -> str | None:
    """``invalid_volume_<side>`` off the 8-decimal volume grid, ``invalid_price_<side>`` for a limit price
    off the KRW tick grid, else None."""
    if volume is not None and not volume_on_grid(volume):
        return f"invalid_volume_{side}"
    if ord_type == "limit" and price is not None and not is_on_tick(price, tick_table):
        return f"invalid_price_{side}"
    return None


def order_total_error(
    *,
    side: str,
    total: Decimal,
    min_total: Decimal = MIN_ORDER_TOTAL_KRW,
    max_total: Decimal = MAX_ORDER_TOTAL_KRW,
) -> str | None:
    """``under_min_total_<side>`` below the minimum; ``over_krw_funds_bid`` above the maximum (a buy's
    rule, §7.3); else None."""
    if total < min_total:
        return f"under_min_total_{side}"
    if side == "bid" and total > max_total:
        return "over_krw_funds_bid"
    return None


def order_rule_error(
    *,
    side: str,
    ord_type: str,
    price: Decimal | None,
    volume: Decimal | None,
    total: Decimal | None = None,
    min_total: Decimal = MIN_ORDER_TOTAL_KRW,
    max_total: Decimal = MAX_ORDER_TOTAL_KRW,
    tick_table: TickTable = KRW_TICK_TABLE,
) -> str | None:
    """The first rule the order breaks, as Upbit's error name, or None: the grids
    (:func:`order_grid_error`), then the total (:func:`order_total_error`). ``total`` defaults to
    :func:`order_total`; pass it for orders whose total depends on the book (a market sell at the best
    bid). Shape (which parameters a type takes) and positivity are the caller's parse step."""
    broken = order_grid_error(side=side, ord_type=ord_type, price=price, volume=volume, tick_table=tick_table)
    if broken is not None:
        return broken
    if total is None:
        total = order_total(ord_type=ord_type, price=price, volume=volume)
    if total is None:
        return None
    return order_total_error(side=side, total=total, min_total=min_total, max_total=max_total)
