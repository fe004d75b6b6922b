"""``manage.py ml_bootstrap``: before any market data has been recorded (a fresh install, the offline demo),
generate day files from the simulator's synthetic order-book model and train a first model per market, so
predictions and auto-trading work from the start. It is promoted only if it beats persistence on
validation, like any other model; a market that already has an active model is left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ApplicationError, Conflict
from market import dayfiles
from market.upbit_sim.synthetic import SyntheticMarket, SyntheticParams
from mlmodel import selectors
from mlmodel.models import TrainingState, TrainingTrigger
from mlmodel.services.runs import training_run_execute, training_run_start


def synthetic_day_files(
    root: Path, market: str, *, minutes: float, seed: int, every_ms: int = 200, signal_strength: float = 0.0
) -> int:
    """Run the simulator's synthetic market for ``minutes`` (ending now), sample its book every ``every_ms``
    like the collector, and write order-book and trade day files. Returns the number of snapshots.
    ``signal_strength`` plants the simulator's predictable order flow (0 = off, docs/simulator.md)."""

    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(minutes * 60_000)
    params = SyntheticParams(signal_strength=float(signal_strength)) if signal_strength else None
    sim = SyntheticMarket(market, seed=seed, start_ms=start_ms, params=params)
    books, trades = [], []
    while True:
        b, t = sim.generate(200_000)
        books.append(b)
        trades.append(t)
        if int(b.ts[-1]) >= end_ms:
            break
    ts = np.concatenate([b.ts for b in books])
    grid = np.arange(start_ms + every_ms, end_ms, every_ms, dtype=np.int64)
    idx = np.searchsorted(ts, grid, side="right") - 1
    keep = idx >= 0
    grid, idx = grid[keep], idx[keep]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in books])[idx]

    ask_px, ask_sz, bid_px, bid_sz = cat("ask_px"), cat("ask_sz"), cat("bid_px"), cat("bid_sz")
    t_ts = np.concatenate([t.ts for t in trades])
    t_keep = t_ts <= grid[-1]
    t_all = {k: np.concatenate([getattr(t, k) for t in trades])[t_keep] for k in ("price", "volume", "side")}
    t_ts = t_ts[t_keep]
    levels = ask_px.shape[1]
    lo = 0
    while lo < len(grid):
        day, day_start, day_end = dayfiles.kst_day_bounds(int(grid[lo]))
        hi = int(np.searchsorted(grid, day_end, side="left"))
        cols: dict[str, Any] = {
            "ts": grid[lo:hi],
            "recv_ts": grid[lo:hi],
            "total_ask_size": np.nansum(ask_sz[lo:hi], axis=1),
            "total_bid_size": np.nansum(bid_sz[lo:hi], axis=1),
        }
        for name, arr in (
            ("ask_price", ask_px),
            ("ask_size", ask_sz),
            ("bid_price", bid_px),
            ("bid_size", bid_sz),
        ):
            for k in range(levels):
                cols[f"{name}_{k + 1}"] = arr[lo:hi, k]
        _write(root, "orderbook", market, day, pa.table(cols, schema=dayfiles.orderbook_schema(levels)))
        tm = (t_ts >= day_start) & (t_ts < day_end)
        _write(
            root,
            "trade",
            market,
            day,
            pa.table(
                {
                    "ts": t_ts[tm],
                    "recv_ts": t_ts[tm],
                    "price": t_all["price"][tm],
                    "volume": t_all["volume"][tm],
                    "side": t_all["side"][tm].astype(np.int8),
                    "sequential_id": np.arange(int(tm.sum()), dtype=np.int64),
                },
                schema=dayfiles.TRADE_SCHEMA,
            ),
        )
        lo = hi
    return int(len(grid))


def _write(root: Path, kind: str, market: str, day: Any, table: pa.Table) -> None:
    directory = dayfiles.day_dir(root, kind, market, day)
    part = dayfiles.next_part_number(directory)
    dayfiles.write_table_atomic(table, directory / f"{dayfiles.PART_PREFIX}{part:05d}.parquet")


class Command(BaseCommand):
    help = "Synthetic day files from the simulator's model and a first model where no model is active."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--markets", default="", help="comma-separated (default settings.MARKET_CODES)")
        parser.add_argument("--minutes", type=float, default=90.0, help="synthetic history per market")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--epochs", type=int, default=15)
        parser.add_argument(
            "--data-dir",
            default="",
            help="where the synthetic day files go "
            "(default <var>/ml-bootstrap-data; never the collector's directory)",
        )
        parser.add_argument("--force", action="store_true", help="train even where a model is active")

    def handle(self, *args: Any, **o: Any) -> None:
        markets = [
            m.strip().upper()
            for m in (o["markets"] or ",".join(settings.MARKET_CODES)).split(",")
            if m.strip()
        ]
        root = Path(o["data_dir"] or Path(settings.VAR_DIR) / "ml-bootstrap-data")
        for market in markets:
            if selectors.model_active(market=market) is not None and not o["force"]:
                self.stdout.write(f"{market}: a model is active already; nothing to do")
                continue
            t0 = time.perf_counter()
            n = synthetic_day_files(root, market, minutes=o["minutes"], seed=o["seed"])
            self.stdout.write(
                f"{market}: {n:,} synthetic snapshots in {time.perf_counter() - t0:.1f} s; training ..."
            )
            params = {
                "market": market,
                "data_dir": str(root),
                "days": 2,
                "epochs": o["epochs"],
                "n_splits": 2,
                "spikes": False,
                "promote_if_better": True,
                "compare_incumbent": True,
                "baselines": ["linear_ofi"],
            }
            try:
                run = training_run_start(
                    market=market, params=params, trigger=TrainingTrigger.COMMAND, deliver=False
                )
            except Conflict as exc:
                self.stderr.write(f"{market}: {exc.message} Skipped.")
                continue
            except ApplicationError as exc:
                raise CommandError(str(exc.message)) from exc
            training_run_execute(run_id=run.pk)
            run.refresh_from_db()
            if run.state != TrainingState.SUCCEEDED:
                self.stderr.write(f"{market}: training failed: {run.message}")
                continue
            self.stdout.write(f"{market}: {run.message}")
