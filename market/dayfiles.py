"""Day files: on-disk layout and schema of recorded market data (one dataset per kind/market/day).

Shared by the collector (writer), the simulator (replay) and mlmodel (datasets). Pure: no Django import.

Layout::

    {root}/{kind}/{market}/{YYYY-MM-DD}/part-{n:05d}.arrows   # open WAL: Arrow IPC stream, appended+fsynced
    {root}/{kind}/{market}/{YYYY-MM-DD}/part-{n:05d}.parquet  # a rolled WAL (one an hour) or compacted day
    {root}/{kind}/{market}/{YYYY-MM-DD}/_COMPLETE              # written once the day is closed

``kind`` is ``orderbook``, ``trade`` or ``gap``; the day is the exchange-local (Asia/Seoul) calendar day.
The collector appends each flush (~2 s) to one write-ahead file per kind/market/hour and fsyncs it; at the
hour the file is rolled into the Parquet file of the same number (written atomically, then the WAL is
removed). A number with both files is read from the Parquet one; a WAL's torn tail (a crash mid-append) is
ignored on read. So a market holds at most ~24 files per kind and day while collecting, and a crash loses at
most the last flush interval. Days written by the older layout (one Parquet segment per flush) read the same
way: every ``part-*.parquet`` is a data file.

Schemas (all timestamps are integer epoch milliseconds, UTC):

* orderbook: ``ts`` (exchange time), ``recv_ts`` (local receive time), ``total_ask_size``, ``total_bid_size``,
  then ``ask_price_1..L``, ``ask_size_1..L``, ``bid_price_1..L``, ``bid_size_1..L`` (level 1 = best,
  float64, NaN where the book has fewer levels). ``L`` is in the file metadata key ``levels``.
* trade: ``ts``, ``recv_ts``, ``price`` (float64), ``volume`` (float64), ``side`` (int8: +1 buyer-initiated
  i.e. Upbit ``ask_bid == "BID"``, -1 seller-initiated), ``sequential_id`` (int64).
* gap: ``ts_start``, ``ts_end``, ``reason`` (string: ``reconnect``, ``restart``, ``duplicate``, ``sequence``,
  ``timestamp``; ``import`` from ``import_book``: a pause longer than its segment gap), ``detail``.

Writing (collector): :class:`DayFileWriter` (WAL appends, hourly roll, KST midnight rollover, resume after
restart) and :func:`compact_day`; imports (``import_sample``, ``import_book``): :func:`write_closed_days`
(whole closed days, staged and moved into place). See docs/market.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

KST = ZoneInfo("Asia/Seoul")
# The real Upbit sample ships beside the repository (../shared/data); UPBIT_SAMPLE_DIR overrides.
_DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "upbit-krw-ada-2018"
SAMPLE_DIR = Path(os.environ.get("UPBIT_SAMPLE_DIR", _DEFAULT_SAMPLE_DIR))
SAMPLE_CSV = SAMPLE_DIR / "upbit_krw-ada_2018-02-18_l7.csv"
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


PARQUET_SUFFIX = ".parquet"
WAL_SUFFIX = ".arrows"


def segment_paths(directory: Path) -> list[Path]:
    """The data files of one day directory, in order: every ``part-N.parquet``, and every ``part-N.arrows``
    (a WAL) whose number has no Parquet file yet (a rolled WAL's Parquet twin holds the same rows)."""
    by_number: dict[int, Path] = {}
    others: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not name.startswith("part-") or not entry.is_file():
            continue
        if name.endswith(PARQUET_SUFFIX):
            path = Path(entry.path)
            n = part_number(path)
            if n is None:
                others.append(path)
            else:
                by_number[n] = path
    for entry in entries:
        if entry.name.startswith("part-") and entry.name.endswith(WAL_SUFFIX) and entry.is_file():
            path = Path(entry.path)
            n = part_number(path)
            if n is not None and n not in by_number:
                by_number[n] = path
    return sorted(others) + [by_number[n] for n in sorted(by_number)]


def wal_paths(directory: Path) -> list[Path]:
    """The write-ahead files (``part-N.arrows``) of one day directory, rolled or not, by number."""
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(WAL_SUFFIX) and e.is_file()]
    except OSError:
        return []
    paths = [directory / n for n in names if n.startswith("part-")]
    return sorted(paths, key=lambda p: part_number(p) or 0)


def read_wal(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """The complete record batches of a WAL (Arrow IPC stream) as one table; a torn tail (the process died
    mid-append) or trailing zeros are ignored. ``None`` when not even the schema was written."""
    try:
        source = pa.memory_map(str(path), "r")
    except (OSError, pa.ArrowInvalid):
        return None
    try:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowInvalid):
            return None
        batches = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (OSError, pa.ArrowInvalid):  # torn tail: everything before it was fsynced whole
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
        if columns is not None:
            table = table.select(columns)
        # Copy out of the memory map so the file can be removed (rolled) while the table lives on.
        return table.combine_chunks() if table.num_rows else table
    finally:
        source.close()


def read_segment(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """One data file (Parquet part or WAL) as a table; ``None`` for a WAL without even a schema."""
    if path.name.endswith(WAL_SUFFIX):
        return read_wal(path, columns)
    return pq.read_table(path, columns=columns)


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


def _empty(kind: str) -> pa.Table:
    if kind == "orderbook":
        return orderbook_schema().empty_table()
    return (TRADE_SCHEMA if kind == "trade" else GAP_SCHEMA).empty_table()


def read_day(root: str | os.PathLike[str], kind: str, market: str, day: dt.date) -> pa.Table:
    """All segments of one day as one table (sorted by time). Empty table with the schema if none."""
    paths = segment_paths(day_dir(root, kind, market, day))
    if not paths:
        return _empty(kind)
    tables = [t for t in (read_segment(p) for p in paths) if t is not None]
    if not tables:
        return _empty(kind)
    table = pa.concat_tables(tables, promote_options="default")
    sort_key = "ts_start" if kind == "gap" else "ts"
    ts = table.column(sort_key).to_numpy()
    if len(ts) > 1 and bool((ts[1:] < ts[:-1]).any()):
        table = table.sort_by(sort_key)  # (stable) the usual case is already in order: no copy then
    return table


def read_days(
    root: str | os.PathLike[str],
    kind: str,
    market: str,
    days: Iterable[dt.date],
    *,
    fallback_root: str | os.PathLike[str] | None = None,
) -> pa.Table:
    """``days`` of one kind as one table. A day with no segments under ``root`` is read from ``fallback_root``
    when given (training reads a day that retention removed from the verified copy fetched there)."""

    def root_of(day: dt.date) -> str | os.PathLike[str]:
        if fallback_root is None or segment_paths(day_dir(root, kind, market, day)):
            return root
        return fallback_root

    tables = [read_day(root_of(d), kind, market, d) for d in days]
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
    # The segment gap the data's importer declared (``import_book --segment-gap``); None: the reader's own.
    segment_gap_ms: int | None = None

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
    """The book's four [N, levels] blocks, C-ordered, each written once, in slices of rows (zero-copy), so the
    column-to-row transpose works on pieces that stay in the CPU cache rather than on whole-day columns
    (about 3x less CPU for a busy market's day than stacking the day's columns)."""
    levels = table_levels(table)
    names = ("ask_price", "ask_size", "bid_price", "bid_size")
    blocks = {name: np.empty((table.num_rows, levels)) for name in names}
    offset = 0
    for batch in table.to_batches(max_chunksize=8192):
        rows = batch.num_rows
        for name, out in blocks.items():
            for i in range(levels):
                column = batch.column(f"{name}_{i + 1}")
                out[offset : offset + rows, i] = column.to_numpy(zero_copy_only=False)
        offset += rows
    return BookArrays(
        ts=table.column("ts").to_numpy().astype(np.int64),
        ask_px=blocks["ask_price"],
        ask_sz=blocks["ask_size"],
        bid_px=blocks["bid_price"],
        bid_sz=blocks["bid_size"],
        segment_gap_ms=table_segment_gap_ms(table),
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


# ----------------------------------------------------------------------------------------------------------
# Writing: crash-safe segments, day rollover, compaction (used by the collector and import_sample)
# ----------------------------------------------------------------------------------------------------------

PART_PREFIX = "part-"
TMP_SUFFIX = ".tmp"
COMPACT_SUFFIX = ".compacting"
OLD_SUFFIX = ".old"
MS_PER_DAY = 86_400_000


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_table_atomic(table: pa.Table, path: Path, *, compression: str = "snappy") -> None:
    """Write a complete Parquet file: temp name in the same directory, fsync, atomic rename, fsync the dir.

    A crash at any point leaves either no file at ``path`` or a finished one, never a torn one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression=compression, use_dictionary=False, write_statistics=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def part_number(path: Path) -> int | None:
    """N of ``part-N.parquet`` or ``part-N.arrows``; ``None`` for any other name."""
    name = path.name
    if not name.startswith(PART_PREFIX):
        return None
    for suffix in (PARQUET_SUFFIX, WAL_SUFFIX):
        if name.endswith(suffix):
            try:
                return int(name[len(PART_PREFIX) : -len(suffix)])
            except ValueError:
                return None
    return None


def next_part_number(directory: Path) -> int:
    numbers = [n for n in (part_number(p) for p in segment_paths(directory)) if n is not None]
    return max(numbers) + 1 if numbers else 0


def mark_complete(directory: Path) -> None:
    """Close a day: write the ``_COMPLETE`` marker (atomically, with the list of its parts for auditing)."""
    if not directory.is_dir() or is_complete(directory):
        return
    names = "\n".join(p.name for p in segment_paths(directory))
    tmp = directory / f".{COMPLETE_MARKER}{TMP_SUFFIX}"
    with open(tmp, "w") as fh:
        fh.write(names + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / COMPLETE_MARKER)
    _fsync_dir(directory)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temp files left by a crash mid-write (they were never renamed, so never part of the data)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for p in directory.iterdir():
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed


def recover_compaction(day_path: Path) -> None:
    """Finish or undo a compaction interrupted by a crash (see :func:`compact_day`)."""
    staged = day_path.with_name(day_path.name + COMPACT_SUFFIX)
    old = day_path.with_name(day_path.name + OLD_SUFFIX)
    if staged.is_dir():
        if day_path.is_dir():
            shutil.rmtree(staged, ignore_errors=True)  # the swap never started: originals are intact
        elif is_complete(staged):
            os.replace(staged, day_path)  # crashed between the two renames
            _fsync_dir(day_path.parent)
        else:
            shutil.rmtree(staged, ignore_errors=True)
    if old.is_dir() and day_path.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.is_dir():
        os.replace(old, day_path)


def compact_day(root: str | os.PathLike[str], kind: str, market: str, day: dt.date) -> Path | None:
    """Rewrite a finished day's segments as one ``part-00000.parquet``, atomically for readers.

    The compacted day is staged in a sibling directory, then swapped in with two renames; a crash at any
    step is repaired by :func:`recover_compaction` (readers never see duplicates or a torn file).
    Returns the compacted file, or ``None`` when the day is not complete or has no data.
    """
    directory = day_dir(root, kind, market, day)
    recover_compaction(directory)
    if not directory.is_dir() or not is_complete(directory):
        return None
    parts = segment_paths(directory)
    if not parts:
        return None
    if len(parts) == 1 and parts[0].name == f"{PART_PREFIX}00000.parquet":
        return parts[0]
    table = read_day(root, kind, market, day)
    if kind == "orderbook":
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"levels": str(table_levels(table)).encode()}
        )
    staged = directory.with_name(directory.name + COMPACT_SUFFIX)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    write_table_atomic(table, staged / f"{PART_PREFIX}00000.parquet", compression="zstd")
    mark_complete(staged)
    old = directory.with_name(directory.name + OLD_SUFFIX)
    os.replace(directory, old)
    os.replace(staged, directory)
    _fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)
    return directory / f"{PART_PREFIX}00000.parquet"


# Parquet metadata key where an importer (``import_book``) records the data's segment gap.
SEGMENT_GAP_KEY = b"segment_gap_ms"


def table_segment_gap_ms(table: pa.Table) -> int | None:
    """The segment gap (ms) the data's importer declared; ``None`` for collector data (readers' default)."""
    raw = (table.schema.metadata or {}).get(SEGMENT_GAP_KEY)
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _split_by_day(table: pa.Table, column: str, tz: dt.tzinfo) -> dict[dt.date, pa.Table]:
    """A table sorted by ``column`` cut into its local days (each a contiguous run of rows)."""
    if table.num_rows == 0:
        return {}
    ts = table.column(column).to_numpy().astype(np.int64)
    out: dict[dt.date, pa.Table] = {}
    t = int(ts[0])
    while True:
        day, start, end = kst_day_bounds(t, tz)
        lo, hi = (int(i) for i in np.searchsorted(ts, [start, end], side="left"))
        if hi > lo:
            out[day] = table.slice(lo, hi - lo)
        if hi >= len(ts):
            return out
        t = int(ts[hi])


def write_closed_days(
    root: str | os.PathLike[str],
    market: str,
    tables: dict[str, pa.Table],
    *,
    replace: bool = False,
    tz: dt.tzinfo = KST,
    on_day: Callable[[str, dt.date, int], None] | None = None,
) -> dict[str, Any]:
    """Write whole, closed days of ``market`` from in-memory tables (kind -> table sorted by time), as
    imports do: one ``part-00000.parquet`` + ``_COMPLETE`` per kind and day.

    Everything is staged in a temporary directory under ``root`` first and moved into place only once all of
    it is written, so a failure leaves ``root`` as it was. The days touched are replaced whole (every kind:
    a stale trade or gap file of a previous import never survives) when ``replace``; otherwise a day that
    already holds files is refused (``FileExistsError``) before anything is written.
    Returns ``{"rows": {kind: n}, "days": [dates]}``; ``on_day(kind, day, rows)`` after each staged file.
    """
    root_path = Path(root)
    by_kind = {
        kind: _split_by_day(table, "ts_end" if kind == "gap" else "ts", tz) for kind, table in tables.items()
    }
    days = sorted({d for per_day in by_kind.values() for d in per_day})
    targets = [(kind, d, day_dir(root_path, kind, market, d)) for d in days for kind in KINDS]
    occupied = [f"{kind}/{market}/{d}" for kind, d, path in targets if path.exists()]
    if occupied and not replace:
        raise FileExistsError(
            f"{len(occupied)} day director{'y' if len(occupied) == 1 else 'ies'} already exist "
            f"(first: {occupied[0]}); pass replace to overwrite them"
        )
    root_path.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root_path))
    rows: dict[str, int] = {kind: 0 for kind in tables}
    try:
        for kind, per_day in by_kind.items():
            for d, part in per_day.items():
                directory = day_dir(staging, kind, market, d)
                directory.mkdir(parents=True)
                write_table_atomic(part, directory / f"{PART_PREFIX}00000.parquet")
                mark_complete(directory)
                rows[kind] += part.num_rows
                if on_day is not None:
                    on_day(kind, d, part.num_rows)
        for kind, d, target in targets:
            staged = day_dir(staging, kind, market, d)
            old = target.with_name(target.name + OLD_SUFFIX)
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
            if staged.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
                _fsync_dir(target.parent)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"rows": rows, "days": days}


def kst_day_bounds(ts_ms: int, tz: dt.tzinfo = KST) -> tuple[dt.date, int, int]:
    """(day, start ms, end ms) of the exchange-local day containing ``ts_ms``."""
    day = day_of(ts_ms, tz)
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp() * 1000)
    end = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).timestamp() * 1000)
    return day, start, end


@dataclass
class _Wal:
    """One open write-ahead file: an Arrow IPC stream appended to and fsynced every flush."""

    path: Path
    fh: Any
    writer: Any  # pa.ipc.RecordBatchStreamWriter
    day: dt.date
    roll_at: int  # epoch ms: closed and rolled into Parquet from then on
    fresh: bool = True  # its directory entry is not fsynced yet (done with its first data, in parallel)


def _wal_append(wal: _Wal, table: pa.Table) -> int:
    """Append ``table`` as record batch(es) and hand it to the OS (durable once :func:`_wal_sync` returns).
    Returns the bytes added."""
    start = wal.fh.tell()
    wal.writer.write_table(table)
    wal.fh.flush()
    return int(wal.fh.tell() - start)


def _wal_sync(wals: list[_Wal], pool: Any | None) -> None:
    """fdatasync every WAL; many at once go through ``pool`` in parallel, so the filesystem commits them
    together (on this box 400 sequential fdatasyncs took 1.1-1.6 s, 400 in 32 threads 0.08-0.12 s)."""
    if pool is None or len(wals) < 4:
        for wal in wals:
            _wal_sync_one(wal)
        return
    for future in [pool.submit(_wal_sync_one, wal) for wal in wals]:
        future.result()


def _wal_sync_one(wal: _Wal) -> None:
    _fdatasync(wal.fh.fileno())
    if wal.fresh:  # a new file: its name must survive a crash too
        _fsync_dir(wal.path.parent)
        wal.fresh = False


def _fdatasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def roll_wal(path: Path, *, compression: str = "snappy") -> Path | None:
    """Turn a closed (or orphaned) WAL into the Parquet file of the same number, then remove the WAL.

    The Parquet file appears atomically (:func:`write_table_atomic`); until the WAL is unlinked both hold the
    same rows and readers take the Parquet one, so a crash at any step neither loses nor doubles rows. A torn
    tail is dropped. Returns the Parquet file (``None`` when the WAL held no rows or was already gone).
    """
    if not path.is_file():
        return None
    target = path.with_name(path.name[: -len(WAL_SUFFIX)] + PARQUET_SUFFIX)
    if not target.exists():
        table = read_wal(path)
        if table is not None and table.num_rows:
            write_table_atomic(table, target, compression=compression)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _fsync_dir(path.parent)
    return target if target.exists() else None


class DayFileWriter:
    """Buffers records of many markets and appends them to per-market write-ahead files.

    * every ``flush_interval`` seconds (default 2), or sooner when ``max_rows`` pile up, each market's
      buffered rows of each kind are appended as one Arrow record batch to that kind/market's open WAL
      (``part-N.arrows``) and fsynced: a crash loses at most the rows of the current interval, and a torn
      tail is ignored on read;
    * a WAL covers at most ``roll_interval`` seconds (default 3600, aligned to the hour); then it is closed
      and rolled into ``part-N.parquet`` (:func:`roll_wal`) from :meth:`tick`, at most ``roll_budget``
      seconds of work per tick so the event loop is never held up long. A market therefore has about
      24 files per kind and day, however often it flushes;
    * at local midnight (by the injected ``clock``, epoch ms) the day's WALs are closed and rolled, then the
      day is closed with ``_COMPLETE`` (so compaction and upload never race a roll);
    * on start, temp files left by a crash are removed, WALs left by an earlier process are rolled (a new
      WAL is always a new number: nothing is ever appended after a torn tail), and earlier days that were
      never closed are closed.

    ``add_*`` take the records of :mod:`market.upbit.records`; the day a row belongs to is decided by its
    receive time (the writer's clock), so a day's files hold what was received that day.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        markets: Iterable[str] = (),
        levels: int = DEFAULT_LEVELS,
        flush_interval: float = 2.0,
        max_rows: int = 200_000,
        clock: Callable[[], int] | None = None,
        tz: dt.tzinfo = KST,
        roll_interval: float = 3600.0,
        roll_budget: float | None = 0.025,
        recover_at_start: bool = True,
    ) -> None:
        self.root = Path(root)
        self.levels = levels
        self.flush_interval_ms = int(flush_interval * 1000)
        self.roll_interval_ms = max(1, int(roll_interval * 1000))
        self.roll_budget = roll_budget
        self.max_rows = max_rows
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.tz = tz
        self.markets: set[str] = set(markets)
        self._buffers: dict[tuple[str, str], list[Any]] = {}
        self._pending = 0
        now = self.clock()
        self.day, self._day_start, self._day_end = kst_day_bounds(now, tz)
        self._last_flush = now
        self._wals: dict[tuple[str, str], _Wal] = {}
        self._next_roll_check = 2**62
        self._to_roll: list[tuple[Path, dt.date]] = []
        self._closing: set[dt.date] = set()
        self.segments_written = 0  # record batches appended
        self.rows_written = 0
        self.rows_dropped = 0
        self.files_rolled = 0
        self.bytes_by_market: dict[str, int] = {}  # WAL bytes appended, per market (metrics read it)
        self._schemas = {"orderbook": orderbook_schema(levels), "trade": TRADE_SCHEMA, "gap": GAP_SCHEMA}
        self._pool: Any | None = None  # fdatasync threads, made at the first flush that needs them
        if recover_at_start:  # a sharded collector recovers each market as it takes it
            self.recover()

    # -- lifecycle --
    def recover(self, markets: Iterable[str] | None = None) -> None:
        """Clean up after a crash (for ``markets``, default the writer's; all when it has none): drop temp
        files, finish compactions, roll WALs left by an earlier process (days before today at once, today's
        from :meth:`tick`), close days before today. Call it for markets this process takes over."""
        wanted = set(markets) if markets is not None else self.markets
        if markets is not None and not wanted:
            return  # nothing asked for (an empty set must not mean every market: other shards write them)
        queued = {p for p, _ in self._to_roll}
        own = {w.path for w in self._wals.values()}
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for market_dir in base.iterdir():
                if not market_dir.is_dir() or (wanted and market_dir.name not in wanted):
                    continue
                for entry in list(market_dir.iterdir()):
                    if entry.name.endswith((COMPACT_SUFFIX, OLD_SUFFIX)):
                        stem = entry.name.rsplit(".", 1)[0]
                        recover_compaction(market_dir / stem)
                for d in list_days(self.root, kind, market_dir.name):
                    directory = day_dir(self.root, kind, market_dir.name, d)
                    remove_stale_temp_files(directory)
                    if d < self.day:
                        if not is_complete(directory):
                            for wal in wal_paths(directory):
                                roll_wal(wal)
                                self.files_rolled += 1
                            mark_complete(directory)
                        continue
                    for wal in wal_paths(directory):
                        if wal not in queued and wal not in own:
                            self._to_roll.append((wal, d))

    # Buffers hold plain tuples of atomic values, not the records: the garbage collector stops tracking
    # such tuples, so hundreds of thousands of buffered rows cost it nothing.
    def add_orderbook(self, rec: Any) -> None:
        row = (rec.ts, rec.recv_ts, rec.total_ask_size, rec.total_bid_size, rec.packed)
        self._add("orderbook", rec.code, row, rec.recv_ts)

    def add_trade(self, rec: Any) -> None:
        row = (rec.ts, rec.recv_ts, rec.price, rec.volume, rec.side, rec.sequential_id)
        self._add("trade", rec.code, row, rec.recv_ts)

    def add_gap(self, market: str, ts_start: int, ts_end: int, reason: str, detail: str = "") -> None:
        self._add("gap", market, (int(ts_start), int(ts_end), reason, detail), int(ts_end))

    def _add(self, kind: str, market: str, row: Any, recv_ts: int) -> None:
        if recv_ts >= self._day_end:
            self.rollover(recv_ts)
        buf = self._buffers.get((kind, market))
        if buf is None:
            buf = self._buffers[(kind, market)] = []
            self.markets.add(market)
        buf.append(row)
        self._pending += 1
        if self._pending >= self.max_rows:
            self.flush()

    def tick(self, now: int | None = None) -> None:
        """Call often (the collector does, ~10x a second): flushes on schedule, closes the day at midnight,
        rolls finished WALs into Parquet within the per-tick budget."""
        now = self.clock() if now is None else now
        if now >= self._day_end:
            self.rollover(now)
        elif now - self._last_flush >= self.flush_interval_ms:
            self.flush(now)
        if self._to_roll or self._closing:
            self.roll_pending(self.roll_budget)

    def rollover(self, now: int) -> None:
        """Write what is buffered into the ending day, close its WALs for rolling, start the new day; the
        ending day gets ``_COMPLETE`` once its WALs are rolled (:meth:`roll_pending`)."""
        old_day = self.day
        self.flush(now)
        for key in list(self._wals):
            self._close_wal(key)
        queued = {p for p, _ in self._to_roll}
        for kind in KINDS:
            for market in self.markets:  # also WALs an earlier owner of the market left that day
                for wal in wal_paths(day_dir(self.root, kind, market, old_day)):
                    if wal not in queued:
                        self._to_roll.append((wal, old_day))
        self._closing.add(old_day)
        self.day, self._day_start, self._day_end = kst_day_bounds(now, self.tz)

    def roll_pending(self, budget: float | None = None) -> int:
        """Roll queued WALs into Parquet, for at most ``budget`` seconds (``None``: all of them; at least
        one per call either way); then close the ended days whose WALs are all rolled. Returns how many."""
        done = 0
        deadline = None if budget is None else time.perf_counter() + budget
        while self._to_roll:
            path, _ = self._to_roll[0]
            try:
                roll_wal(path)
            except (OSError, pa.ArrowException):  # e.g. disk full: leave it queued (it reads as a WAL)
                self._to_roll.append(self._to_roll.pop(0))
                raise
            self._to_roll.pop(0)
            self.files_rolled += 1
            done += 1
            if deadline is not None and time.perf_counter() >= deadline:
                break
        for day in sorted(self._closing):
            if any(d == day for _, d in self._to_roll):
                continue
            for kind in KINDS:
                for market in self.markets:
                    mark_complete(day_dir(self.root, kind, market, day))
            self._closing.discard(day)
        return done

    def flush(self, now: int | None = None) -> list[Path]:
        """Append every non-empty buffer to its WAL (one record batch) and fsync it. Returns the WALs."""
        now = self.clock() if now is None else now
        buffers, self._buffers, self._pending = self._buffers, {}, 0
        self._last_flush = now
        if now >= self._next_roll_check:
            self._close_due(now)
        return self._write_buffers(buffers, now)

    def _write_buffers(self, buffers: dict[tuple[str, str], list[Any]], now: int) -> list[Path]:
        """Append each (kind, market)'s rows to its WAL, then fdatasync them all; failures stay buffered."""
        written: list[Path] = []
        failure: BaseException | None = None
        touched: list[tuple[str, str]] = []
        for (kind, market), rows in buffers.items():
            if not rows:
                continue
            try:
                written.append(self._append(kind, market, self._table(kind, rows), now, sync=False))
                touched.append((kind, market))
            except (OSError, pa.ArrowException) as exc:  # e.g. disk full: keep the rows for the next try
                failure = exc
                kept = rows[-self.max_rows * 5 :]
                self._buffers.setdefault((kind, market), [])[:0] = kept
                self._pending += len(kept)
                self.rows_dropped += len(rows) - len(kept)
        if touched:
            try:
                _wal_sync([self._wals[key] for key in touched], self._sync_pool(len(touched)))
            except OSError:
                # Durability of these appends is unknown: retire the WALs (a new file at the next flush) and
                # report it; the rows may or may not survive a crash that follows.
                for key in touched:
                    self._close_wal(key)
                raise
        if failure is not None:
            raise failure
        return written

    def close(self) -> None:
        """Flush what is buffered and close the WALs (the day is not closed: a restart on the same day
        resumes it and rolls them); WALs already due are rolled, an ended day is closed."""
        now = self.clock()
        if now >= self._day_end:
            self.rollover(now)
        else:
            self.flush(now)
        for key in list(self._wals):
            wal = self._wals.pop(key)
            self._finish_wal(wal)
        self._next_roll_check = 2**62
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.roll_pending(None)

    # -- sharding: a market changes hands between collector processes (market/leases.py) --
    def markets_release(self, markets: Iterable[str]) -> None:
        """Another process writes ``markets`` from now on: append what is buffered for them and close their
        WALs without rolling them (the next holder's :meth:`markets_adopt` rolls them: one roller per
        file); their days are no longer this writer's to close."""
        wanted = set(markets)
        now = self.clock()
        for key in [k for k in self._buffers if k[1] in wanted]:
            rows = self._buffers.pop(key)
            self._pending -= len(rows)
            if rows:
                self._append(key[0], key[1], self._table(key[0], rows), now)
        for key in [k for k in self._wals if k[1] in wanted]:
            self._finish_wal(self._wals.pop(key))
        self._to_roll = [(p, d) for p, d in self._to_roll if p.parent.parent.name not in wanted]
        self.markets -= wanted

    def markets_adopt(self, markets: Iterable[str]) -> None:
        """This process writes ``markets`` from now on (a lease taken): what another process left of them
        today is recovered (its WALs queued for rolling); new rows go to new files."""
        wanted = set(markets)
        self.markets |= wanted
        self.recover(wanted)

    # -- internals --
    def _sync_pool(self, n: int) -> Any | None:
        if n < 4:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dayfiles-fsync")
        return self._pool

    def _append(self, kind: str, market: str, table: pa.Table, now: int, *, sync: bool = True) -> Path:
        key = (kind, market)
        wal = self._wals.get(key)
        if wal is None:
            wal = self._open_wal(kind, market, now)
        start = wal.fh.tell()
        try:
            added = _wal_append(wal, table)
            if sync:
                _wal_sync([wal], None)
        except BaseException:
            # Cut back whatever part of the batch reached the file and retire it: the rows stay buffered,
            # and the next flush starts a new WAL (nothing is ever written after a possibly torn tail).
            with contextlib.suppress(OSError, ValueError):
                wal.fh.seek(start)
                wal.fh.truncate()
            self._close_wal(key)
            raise
        self.segments_written += 1
        self.rows_written += table.num_rows
        self.bytes_by_market[market] = self.bytes_by_market.get(market, 0) + added
        return wal.path

    def _open_wal(self, kind: str, market: str, now: int) -> _Wal:
        directory = day_dir(self.root, kind, market, self.day)
        directory.mkdir(parents=True, exist_ok=True)
        n = next_part_number(directory)
        path = directory / f"{PART_PREFIX}{n:05d}{WAL_SUFFIX}"
        fh = open(path, "xb")  # noqa: SIM115 - lives as long as the WAL; closed by _finish_wal
        try:
            writer = pa.ipc.new_stream(fh, self._schemas[kind])
        except BaseException:
            fh.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        # Nothing is synced here: the file and its directory entry are fsynced with its first append, in
        # parallel with the flush's other WALs (400 new files an hour at 200 markets).
        roll_at = min((now // self.roll_interval_ms + 1) * self.roll_interval_ms, self._day_end)
        wal = self._wals[(kind, market)] = _Wal(path, fh, writer, self.day, roll_at)
        self._next_roll_check = min(self._next_roll_check, roll_at)
        return wal

    def _close_due(self, now: int) -> None:
        upcoming = 2**62
        for key, wal in list(self._wals.items()):
            if wal.roll_at <= now:
                self._close_wal(key)
            else:
                upcoming = min(upcoming, wal.roll_at)
        self._next_roll_check = upcoming

    def _close_wal(self, key: tuple[str, str]) -> None:
        wal = self._wals.pop(key, None)
        if wal is None:
            return
        self._finish_wal(wal)
        self._to_roll.append((wal.path, wal.day))

    @staticmethod
    def _finish_wal(wal: _Wal) -> None:
        """End-of-stream marker, fsync, close; errors only cost the marker (readers stop at a torn tail)."""
        with contextlib.suppress(OSError, pa.ArrowException, ValueError):
            wal.writer.close()
        with contextlib.suppress(OSError, ValueError):
            wal.fh.flush()
            _fdatasync(wal.fh.fileno())
        with contextlib.suppress(OSError):
            wal.fh.close()

    def _table(self, kind: str, rows: list[Any]) -> pa.Table:
        if kind == "orderbook":
            return _orderbook_rows_table(rows, self.levels)
        if kind == "trade":
            return _trade_rows_table(rows)
        starts, ends, reasons, details = zip(*rows, strict=True)
        cols = {"ts_start": starts, "ts_end": ends, "reason": reasons, "detail": details}
        return pa.table({k: list(v) for k, v in cols.items()}, schema=GAP_SCHEMA)


def _book_cube(packed: list[bytes], levels: int) -> np.ndarray:
    """``[n, levels, 4]`` float64 (ask_price, bid_price, ask_size, bid_size) from order-book records'
    ``packed`` little-endian doubles; shorter books are NaN-padded, deeper ones cut."""
    width = levels * 32  # bytes per book: 4 float64 per level
    if all(len(p) == width for p in packed):
        return np.frombuffer(b"".join(packed), dtype="<f8").reshape(len(packed), levels, 4)
    cube = np.full((len(packed), levels, 4), np.nan)
    for i, p in enumerate(packed):
        usable = min(len(p), width) // 32 * 32  # whole levels only
        k = usable // 32
        cube[i, :k] = np.frombuffer(p[:usable], "<f8").reshape(k, 4)
    return cube


def _orderbook_rows_table(rows: list[tuple[int, int, float, float, bytes]], levels: int) -> pa.Table:
    ts, recv, tas, tbs, packed = zip(*rows, strict=True)
    cols: dict[str, Any] = {
        "ts": np.array(ts, dtype=np.int64),
        "recv_ts": np.array(recv, dtype=np.int64),
        "total_ask_size": np.array(tas, dtype=np.float64),
        "total_bid_size": np.array(tbs, dtype=np.float64),
    }
    # [4, levels, n]: one contiguous column per (field, level).
    planes = _book_cube(list(packed), levels).transpose(2, 1, 0).copy()  # writable, C-contiguous
    for price_i, size_i, side in ((0, 2, "ask"), (1, 3, "bid")):
        px, sz = planes[price_i], planes[size_i]
        empty = ~(px > 0)
        px[empty] = np.nan
        sz[empty] = np.nan
        for i in range(levels):
            cols[f"{side}_price_{i + 1}"] = px[i]
            cols[f"{side}_size_{i + 1}"] = sz[i]
    schema = orderbook_schema(levels)
    return pa.table({f.name: cols[f.name] for f in schema}, schema=schema)


def _trade_rows_table(rows: list[tuple[int, int, float, float, int, int]]) -> pa.Table:
    ts, recv, price, volume, side, sid = zip(*rows, strict=True)
    return pa.table(
        {
            "ts": np.array(ts, dtype=np.int64),
            "recv_ts": np.array(recv, dtype=np.int64),
            "price": np.array(price, dtype=np.float64),
            "volume": np.array(volume, dtype=np.float64),
            "side": np.array(side, dtype=np.int8),
            "sequential_id": np.array(sid, dtype=np.int64),
        },
        schema=TRADE_SCHEMA,
    )


def finished_days(
    root: str | os.PathLike[str], *, today: dt.date, quiet_seconds: float = 600.0
) -> list[tuple[str, str, dt.date, Path]]:
    """Every (kind, market, day, dir) that is closed: ``_COMPLETE``, or before ``today`` and untouched for
    ``quiet_seconds`` (a collector that was down at midnight never closed it; such a day is closed here)."""
    out = []
    base = Path(root)
    now = time.time()
    for kind in KINDS:
        kind_dir = base / kind
        if not kind_dir.is_dir():
            continue
        for market_dir in sorted(kind_dir.iterdir()):
            if not market_dir.is_dir():
                continue
            for d in list_days(base, kind, market_dir.name):
                directory = day_dir(base, kind, market_dir.name, d)
                recover_compaction(directory)
                if not directory.is_dir():
                    continue
                if not is_complete(directory):
                    if d >= today:
                        continue
                    newest = max((p.stat().st_mtime for p in directory.iterdir()), default=0.0)
                    if now - newest < quiet_seconds:
                        continue
                    remove_stale_temp_files(directory)
                    mark_complete(directory)
                out.append((kind, market_dir.name, d, directory))
    return out


def last_recorded_ts(root: str | os.PathLike[str], market: str, day: dt.date) -> int | None:
    """The latest receive time stored for ``market`` on ``day`` (order books and trades), from the newest
    non-empty data file; ``None`` when nothing is stored. Used to record the outage when a collector
    restarts."""
    latest: int | None = None
    for kind in ("orderbook", "trade"):
        for path in reversed(segment_paths(day_dir(root, kind, market, day))):
            try:
                table = read_segment(path, columns=["recv_ts"])
            except (OSError, pa.ArrowInvalid):
                continue
            if table is None or not table.num_rows:
                continue
            value = int(pc.max(table.column("recv_ts")).as_py())
            latest = value if latest is None else max(latest, value)
            break
    return latest
