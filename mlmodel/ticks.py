"""Upbit KRW price units (tick sizes) as vectorised numpy functions, used by features and the backtester."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# (lower bound in KRW, tick) from the table effective 2025-07-31 (shared/upbit-api.md section 7.1), highest first.
KRW_TICKS_2025: tuple[tuple[float, float], ...] = (
    (1_000_000.0, 1000.0),
    (500_000.0, 500.0),
    (100_000.0, 100.0),
    (50_000.0, 50.0),
    (10_000.0, 10.0),
    (5_000.0, 5.0),
    (100.0, 1.0),
    (10.0, 0.1),
    (1.0, 0.01),
    (0.1, 0.001),
    (0.01, 0.0001),
    (0.001, 0.00001),
    (0.0001, 0.000001),
    (0.00001, 0.0000001),
    (0.0, 0.00000001),
)

TickFn = Callable[[np.ndarray], np.ndarray]


def tick_table_fn(table: Sequence[tuple[float, float]] = KRW_TICKS_2025) -> TickFn:
    """A vectorised ``price -> tick`` function for a (lower bound, tick) table sorted highest first."""
    bounds = np.array([b for b, _ in table][::-1], dtype=np.float64)
    ticks = np.array([t for _, t in table][::-1], dtype=np.float64)

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


krw_tick_size: TickFn = tick_table_fn()


def round_to_tick(price: float, tick: float, *, up: bool) -> float:
    """Round a price onto the tick grid (up for buy caps, down for sell floors), robust to float noise."""
    q = price / tick
    n = np.ceil(q - 1e-9) if up else np.floor(q + 1e-9)
    return float(round(n * tick, 10))
