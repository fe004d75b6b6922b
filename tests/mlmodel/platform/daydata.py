"""Write synthetic order-book series as collector day files (the layout training reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from market import dayfiles
from market.dayfiles import BookArrays, TradeArrays
from tests.mlmodel.synth import synthetic_market

# 2024-01-01 23:50 KST: a series of a few tens of minutes crosses midnight, i.e. spans two day files.
START_MS = 1_704_120_600_000


def write_day_files(root: Path, market: str, book: BookArrays, trades: TradeArrays) -> list:
    levels = book.levels
    days = np.array([dayfiles.day_of(int(t)) for t in book.ts])
    t_days = np.array([dayfiles.day_of(int(t)) for t in trades.ts])
    written = []
    for day in sorted(set(days.tolist())):
        m = days == day
        cols = {
            "ts": book.ts[m],
            "recv_ts": book.ts[m],
            "total_ask_size": book.ask_sz[m].sum(axis=1),
            "total_bid_size": book.bid_sz[m].sum(axis=1),
        }
        for name, arr in (
            ("ask_price", book.ask_px),
            ("ask_size", book.ask_sz),
            ("bid_price", book.bid_px),
            ("bid_size", book.bid_sz),
        ):
            for i in range(levels):
                cols[f"{name}_{i + 1}"] = arr[m, i]
        table = pa.table(cols, schema=dayfiles.orderbook_schema(levels))
        d = dayfiles.day_dir(root, "orderbook", market, day)
        dayfiles.write_table_atomic(table, d / "part-00000.parquet")
        tm = t_days == day
        ttable = pa.table(
            {
                "ts": trades.ts[tm],
                "recv_ts": trades.ts[tm],
                "price": trades.price[tm],
                "volume": trades.volume[tm],
                "side": trades.side[tm].astype(np.int8),
                "sequential_id": np.arange(int(tm.sum()), dtype=np.int64),
            },
            schema=dayfiles.TRADE_SCHEMA,
        )
        dayfiles.write_table_atomic(
            ttable, dayfiles.day_dir(root, "trade", market, day) / "part-00000.parquet"
        )
        written.append(day)
    return written


def synthetic_days(
    root: Path, market: str = "KRW-BTC", *, n: int = 7000, seed: int = 1, signal_strength: float = 3.0
) -> tuple[BookArrays, TradeArrays]:
    book, trades = synthetic_market(
        n, seed=seed, start_ms=START_MS, levels=5, price=100_000.0, tick=50.0, signal_strength=signal_strength
    )
    write_day_files(root, market, book, trades)
    return book, trades


def demo_market_days(
    root: Path,
    market: str = "KRW-BTC",
    *,
    minutes: float = 20.0,
    seed: int = 1,
    strength: float = 1.0,
    every_ms: int = 200,
    levels: int = 15,
    **signal: float,
) -> tuple[BookArrays, TradeArrays]:
    """``minutes`` of the simulator's own synthetic market (``market.upbit_sim.synthetic``) at the demo's
    planted-signal ``strength`` (``signal`` overrides ``SyntheticParams.signal_*``), event by event, sampled
    every ``every_ms`` with ``levels`` levels and written as collector day files: the demo's market as the
    first-model bootstrap reads it."""
    from dataclasses import replace

    from market.upbit_sim.synthetic import SyntheticMarket
    from mlmodel.dataset import sample_book

    base = SyntheticMarket(market, seed=seed, start_ms=START_MS)
    model = SyntheticMarket(
        market,
        seed=seed,
        start_ms=START_MS,
        params=replace(base.params, signal_strength=strength, **signal),
    )
    probe, _ = model.generate(2000)
    rate = 2000 / ((probe.ts[-1] - probe.ts[0]) / 1000)
    events, trades = model.generate(int(rate * minutes * 60 * 1.02))
    book = sample_book(events, every_ms=every_ms)
    n = min(levels, book.ask_px.shape[1])
    book = BookArrays(book.ts, book.ask_px[:, :n], book.ask_sz[:, :n], book.bid_px[:, :n], book.bid_sz[:, :n])
    write_day_files(root, market, book, trades)
    return book, trades
