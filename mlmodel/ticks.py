"""Upbit KRW price units (tick sizes) as vectorised numpy functions, used by features and the backtester."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np

from market.upbit.protocol import KRW_TICK_TABLE, KRW_TICK_TABLE_2024

TickFn = Callable[[np.ndarray], np.ndarray]


def tick_table_arrays(
    table: Sequence[tuple[Decimal | float, Decimal | float]] = KRW_TICK_TABLE,
) -> tuple[np.ndarray, np.ndarray]:
    """(lower bounds ascending, -inf first; ticks): the lookup arrays of a table sorted highest first."""
    bounds = np.array([float(b) for b, _ in table][::-1], dtype=np.float64)
    ticks = np.array([float(t) for _, t in table][::-1], dtype=np.float64)
    bounds[0] = -np.inf  # below the smallest bound the smallest tick applies
    return bounds, ticks


def tick_table_fn(table: Sequence[tuple[Decimal | float, Decimal | float]] = KRW_TICK_TABLE) -> TickFn:
    """A vectorised ``price -> tick`` function for a (lower bound, tick) table sorted highest first
    (``market.upbit.protocol`` holds Upbit's tables)."""
    bounds, ticks = tick_table_arrays(table)

    def tick(price: np.ndarray) -> np.ndarray:
        p = np.asarray(price, dtype=np.float64)
        idx = np.searchsorted(bounds, p, side="right") - 1
        out = ticks[np.clip(idx, 0, len(ticks) - 1)]
        return np.where(np.isfinite(p), out, np.nan)

    return tick


def constant_tick_fn(tick: float) -> TickFn:
    """A tick function for markets (or synthetic data) with one price unit."""

    def fn(price: np.ndarray) -> np.ndarray:
        p = np.asarray(price, dtype=np.float64)
        return np.where(np.isfinite(p), tick, np.nan)

    return fn


krw_tick_size: TickFn = tick_table_fn(KRW_TICK_TABLE)
krw_tick_size_2024: TickFn = tick_table_fn(KRW_TICK_TABLE_2024)


def round_to_tick(price: float, tick: float, *, up: bool) -> float:
    """Round a price onto the tick grid (up for buy caps, down for sell floors), robust to float noise."""
    q = price / tick
    n = np.ceil(q - 1e-9) if up else np.floor(q + 1e-9)
    return float(round(n * tick, 10))
