"""Day files: the on-disk layout and schema of recorded market data (Parquet, one dataset per kind/market/day).

Shared by the collector (writer), the simulator (replay) and mlmodel (datasets). Pure: no Django import.

Layout::

    {root}/{kind}/{market}/{YYYY-MM-DD}/part-{n:05d}.parquet   # segments, each a complete Parquet file
    {root}/{kind}/{market}/{YYYY-MM-DD}/_COMPLETE              # written once the day is closed

``kind`` is ``orderbook``, ``trade`` or ``gap``; the day is the exchange-local (Asia/Seoul) calendar day.

Schemas (all timestamps are integer epoch milliseconds, UTC):

* orderbook: ``ts`` (exchange time), ``recv_ts`` (local receive time), ``total_ask_size``, ``total_bid_size``,
  then ``ask_price_1..L``, ``ask_size_1..L``, ``bid_price_1..L``, ``bid_size_1..L`` (level 1 = best,
  float64, NaN where the book has fewer levels). ``L`` is in the file metadata key ``levels``.
* trade: ``ts``, ``recv_ts``, ``price`` (float64), ``volume`` (float64), ``side`` (int8: +1 buyer-initiated
  i.e. Upbit ``ask_bid == "BID"``, -1 seller-initiated), ``sequential_id`` (int64).
* gap: ``ts_start``, ``ts_end``, ``reason`` (string: ``reconnect``, ``sequence``, ``stale``, ...), ``detail`` (string).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KST = ZoneInfo("Asia/Seoul")
KINDS = ("orderbook", "trade", "gap")
COMPLETE_MARKER = "_COMPLETE"
DEFAULT_LEVELS = 30


def orderbook_schema(levels: int = DEFAULT_LEVELS) -> pa.Schema:
    fields = [
        pa.field("ts", pa.int64()),
        pa.field("recv_ts", pa.int64()),
        pa.field("total_ask_size", pa.float64()),
        pa.field("total_bid_size", pa.float64()),
    ]
    for name in ("ask_price", "ask_size", "bid_price", "bid_size"):
        fields += [pa.field(f"{name}_{i}", pa.float64()) for i in range(1, levels + 1)]
    return pa.schema(fields, metadata={"levels": str(levels), "kind": "orderbook"})


TRADE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64()),
        pa.field("recv_ts", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("side", pa.int8()),
        pa.field("sequential_id", pa.int64()),
    ],
    metadata={"kind": "trade"},
)

GAP_SCHEMA = pa.schema(
    [
        pa.field("ts_start", pa.int64()),
        pa.field("ts_end", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ],
    metadata={"kind": "gap"},
)


def day_of(ts_ms: int, tz: dt.tzinfo = KST) -> dt.date:
    """The exchange-local calendar day an epoch-ms timestamp belongs to."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=tz).date()


def day_dir(root: str | os.PathLike[str], kind: str, market: str, day: dt.date) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return Path(root) / kind / market / day.isoformat()


def segment_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).exists()


def list_days(root: str | os.PathLike[str], kind: str, market: str) -> list[dt.date]:
    base = Path(root) / kind / market
    if not base.is_dir():
        return []
    days = []
    for p in base.iterdir():
        try:
            days.append(dt.date.fromisoformat(p.name))
        except ValueError:
            continue
    return sorted(days)


def read_day(root: str | os.PathLike[str], kind: str, market: str, day: dt.date) -> pa.Table:
    """All segments of one day as one table (sorted by time). Empty table with the schema if none."""
    paths = segment_paths(day_dir(root, kind, market, day))
    if not paths:
        if kind == "orderbook":
            return orderbook_schema().empty_table()
        return (TRADE_SCHEMA if kind == "trade" else GAP_SCHEMA).empty_table()
    tables = [pq.read_table(p) for p in paths]
    table = pa.concat_tables(tables, promote_options="default")
    sort_key = "ts_start" if kind == "gap" else "ts"
    return table.sort_by(sort_key)


def read_days(
    root: str | os.PathLike[str], kind: str, market: str, days: Iterable[dt.date]
) -> pa.Table:
    tables = [read_day(root, kind, market, d) for d in days]
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if not tables:
        return read_day(root, kind, market, dt.date(1970, 1, 1))
    return pa.concat_tables(tables, promote_options="default")


@dataclass(frozen=True)
class BookArrays:
    """An order-book series as numpy arrays: the shape features, the backtester and replay work on."""

    ts: np.ndarray  # int64 [N] epoch ms
    ask_px: np.ndarray  # float64 [N, L]
    ask_sz: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray

    @property
    def levels(self) -> int:
        return int(self.ask_px.shape[1])

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True)
class TradeArrays:
    ts: np.ndarray  # int64 [M]
    price: np.ndarray  # float64 [M]
    volume: np.ndarray  # float64 [M]
    side: np.ndarray  # int8 [M], +1 buyer-initiated, -1 seller-initiated

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def table_levels(table: pa.Table) -> int:
    meta = table.schema.metadata or {}
    if b"levels" in meta:
        return int(meta[b"levels"])
    return sum(1 for n in table.column_names if n.startswith("ask_price_"))


def book_arrays(table: pa.Table) -> BookArrays:
    levels = table_levels(table)

    def block(name: str) -> np.ndarray:
        cols = [table.column(f"{name}_{i}").to_numpy(zero_copy_only=False) for i in range(1, levels + 1)]
        if not cols:
            return np.empty((table.num_rows, 0))
        return np.ascontiguousarray(np.column_stack(cols).astype(np.float64, copy=False))

    return BookArrays(
        ts=table.column("ts").to_numpy().astype(np.int64),
        ask_px=block("ask_price"),
        ask_sz=block("ask_size"),
        bid_px=block("bid_price"),
        bid_sz=block("bid_size"),
    )


def trade_arrays(table: pa.Table) -> TradeArrays:
    return TradeArrays(
        ts=table.column("ts").to_numpy().astype(np.int64),
        price=table.column("price").to_numpy().astype(np.float64),
        volume=table.column("volume").to_numpy().astype(np.float64),
        side=table.column("side").to_numpy().astype(np.int8),
    )


def sample_csv_tables(path: str | os.PathLike[str]) -> tuple[pa.Table, pa.Table]:
    """Convert the real Upbit sample (shared/data/upbit-krw-ada-2018, 7 levels, 1-2 s snapshots) to
    (orderbook, trade) tables in the day-file schema.

    The sample has no trade ids or sides: a trade row is emitted when the last trade changes, its side
    inferred by the tick rule against the previous snapshot's mid (the usual Lee-Ready fallback).
    """
    import pyarrow.csv as pcsv

    raw = pcsv.read_csv(path)
    levels = sum(1 for n in raw.column_names if n.startswith("ask_price_"))
    ts = raw.column("timestamp_s").to_numpy().astype(np.int64) * 1000
    n = len(ts)
    # Several snapshots share one second: spread them evenly inside it so time stays strictly usable.
    order_in_second = np.zeros(n, dtype=np.int64)
    counts: dict[int, int] = {}
    for i, t in enumerate(ts):
        order_in_second[i] = counts.get(int(t), 0)
        counts[int(t)] = order_in_second[i] + 1
    per_second = np.array([counts[int(t)] for t in ts])
    ts = ts + (order_in_second * 1000) // per_second
    cols: dict[str, np.ndarray] = {"ts": ts, "recv_ts": ts.copy()}
    ask_sz = np.column_stack([raw.column(f"ask_size_{i}").to_numpy() for i in range(1, levels + 1)])
    bid_sz = np.column_stack([raw.column(f"bid_size_{i}").to_numpy() for i in range(1, levels + 1)])
    cols["total_ask_size"] = ask_sz.sum(axis=1)
    cols["total_bid_size"] = bid_sz.sum(axis=1)
    for name in ("ask_price", "ask_size", "bid_price", "bid_size"):
        for i in range(1, levels + 1):
            cols[f"{name}_{i}"] = raw.column(f"{name}_{i}").to_numpy().astype(np.float64)
    book = pa.table(cols, schema=orderbook_schema(levels))

    price = raw.column("last_trade_price").to_numpy().astype(np.float64)
    qty = raw.column("last_trade_qty").to_numpy().astype(np.float64)
    changed = np.ones(n, dtype=bool)
    changed[1:] = (price[1:] != price[:-1]) | (qty[1:] != qty[:-1])
    mid = (cols["ask_price_1"] + cols["bid_price_1"]) / 2
    prev_mid = np.concatenate([[mid[0]], mid[:-1]])
    side = np.where(price >= prev_mid, 1, -1).astype(np.int8)
    idx = np.nonzero(changed)[0]
    trades = pa.table(
        {
            "ts": ts[idx],
            "recv_ts": ts[idx],
            "price": price[idx],
            "volume": qty[idx],
            "side": side[idx],
            "sequential_id": ts[idx] * 1000 + np.arange(len(idx)) % 1000,
        },
        schema=TRADE_SCHEMA,
    )
    return book, trades
