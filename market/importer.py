"""Import anyone's order-book snapshots (and trades) as day files: ``manage.py import_book``'s engine.

Reads CSV or Parquet in the day files' wide layout (or through a column map), scales prices, checks them
against a tick table, validates everything and infers missing trade sides; only a fully valid input is
written (through :func:`market.dayfiles.write_closed_days`, staged then moved into place). Pure: no Django.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from market import dayfiles
from market.upbit.protocol import (
    FEE_RATE,
    KRW_TICK_TABLE,
    KRW_TICK_TABLE_2024,
    KRW_TICK_TABLE_PRE2024,
    MARKET_CODE_RE,
)

TICK_TABLES = {
    "upbit-krw": KRW_TICK_TABLE,
    "upbit-krw-2024": KRW_TICK_TABLE_2024,
    "upbit-krw-pre2024": KRW_TICK_TABLE_PRE2024,
}
TS_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
BOOK_FIELDS = ("ask_price", "ask_size", "bid_price", "bid_size")
GAP_REASON = "import"
MAX_LISTED = 5  # rows quoted per problem in an error message
ProgressFn = Callable[[str, int, int], None]  # (stage, rows done, rows in all)


class BookImportError(ValueError):
    """The input cannot be imported; ``problems`` lists every reason found (nothing was written)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class ImportOptions:
    market: str
    columns: Mapping[str, str] = field(default_factory=dict)  # day-file name -> input name
    trade_columns: Mapping[str, str] = field(default_factory=dict)
    ts_unit: str = "auto"  # auto | s | ms | us | ns (numbers); typed or ISO-8601 times need none
    price_scale: float = 1.0  # every price (book and trades) is multiplied by this first
    tick: str = "upbit-krw"  # a key of TICK_TABLES, or one fixed tick such as "0.01"
    off_tick: str = "refuse"  # refuse | round (to the nearest tick)
    fee_rate: float = float(FEE_RATE)  # recorded in the files' metadata
    segment_gap_s: float = 10.0  # a longer pause between snapshots starts a new segment
    levels: int | None = None  # keep the best N levels (default: all the input has)
    allow_short_books: bool = False  # empty deeper levels (NaN, or price and size 0) become NaN
    replace: bool = False  # overwrite days that already hold files


@dataclass
class ImportResult:
    snapshots: int
    trades: int
    gaps: int
    levels: int
    days: list[Any]
    ts_unit: str
    rounded_prices: int = 0
    sides_given: int = 0
    sides_quote: int = 0  # inferred from the book before the trade (at/above ask, at/below bid)
    sides_tick: int = 0  # inferred by the tick rule
    sides_default: int = 0  # neither decided (first trades at an unchanged price inside the spread): +1


# ----------------------------------------------------------------------------------------------- input


def column_map_parse(spec: str) -> dict[str, str]:
    """``ts=time,ask_price_{i}=ap{i}`` or a JSON object (inline or a ``.json`` file) -> {day-file: input}.

    A ``{i}`` in both names stands for the level number (1, 2, ... while the input has the column)."""
    spec = (spec or "").strip()
    if not spec:
        return {}
    if spec.endswith(".json") or spec.startswith("{"):
        try:
            text = Path(spec).read_text() if spec.endswith(".json") else spec
            data = json.loads(text)
        except (OSError, ValueError) as exc:
            raise BookImportError([f"column map {spec!r}: {exc}"]) from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise BookImportError([f"column map {spec!r}: expected a JSON object of names"])
        return {str(k): v for k, v in data.items()}
    out: dict[str, str] = {}
    for item in spec.split(","):
        target, sep, source = item.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise BookImportError([f"column map: {item!r} is not NAME=INPUT_NAME"])
        out[target.strip()] = source.strip()
    return out


def table_read(path: str | Path) -> pa.Table:
    """A CSV (also ``.csv.gz``) or Parquet file as an Arrow table."""
    p = Path(path)
    if not p.is_file():
        raise BookImportError([f"{p}: no such file"])
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(p)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            opts = pcsv.ParseOptions(delimiter="\t") if name.endswith(".tsv") else None
            return pcsv.read_csv(p, parse_options=opts)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BookImportError([f"{p.name}: cannot read: {exc}"]) from exc
    raise BookImportError([f"{p.name}: unknown format (use .csv, .csv.gz, .tsv, .parquet)"])


def _apply_map(table: pa.Table, mapping: Mapping[str, str], what: str) -> pa.Table:
    """Rename input columns to day-file names; unmapped columns keep their names."""
    renames: dict[str, str] = {}
    missing: list[str] = []
    for target, source in mapping.items():
        if "{i}" in target or "{i}" in source:
            i = 1
            while source.format(i=i) in table.column_names:
                renames[source.format(i=i)] = target.format(i=i)
                i += 1
            if i == 1:
                missing.append(source)
        elif source in table.column_names:
            renames[source] = target
        else:
            missing.append(source)
    if missing:
        raise BookImportError(
            [f"{what}: column map names columns the input does not have: {', '.join(missing)}"]
        )
    # A mapped target replaces an input column of the same name that is not itself mapped.
    keep = [c for c in table.column_names if c in renames or c not in renames.values()]
    table = table.select(keep)
    return table.rename_columns([renames.get(c, c) for c in table.column_names])


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    listed = ", ".join(str(int(i) + 1) for i in idx[:MAX_LISTED])
    more = f" and {len(idx) - MAX_LISTED} more" if len(idx) > MAX_LISTED else ""
    return f"{len(idx)} row(s): {listed}{more}"


def _timestamps_ms(column: pa.ChunkedArray, unit: str, what: str) -> tuple[np.ndarray, str]:
    """Epoch milliseconds (int64) from typed times, ISO-8601 strings or numbers in ``unit``."""
    t = column.type
    try:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            column = pc.cast(column, pa.timestamp("ms"))
            t = column.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            if column.null_count:
                raise BookImportError([f"{what} ts: empty in {column.null_count} row(s)"])
            ms = pc.cast(pc.cast(column, pa.timestamp("ms", tz=getattr(t, "tz", None))), pa.int64())
            return ms.to_numpy().astype(np.int64), "time"
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BookImportError([f"{what} ts: not a time ({exc})"]) from exc
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise BookImportError([f"{what} ts: type {t} is neither a time nor a number"])
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise BookImportError([f"{what} ts: missing or not a number in {_rows(bad)}"])
    if unit == "auto":
        top = float(np.nanmax(np.abs(values))) if len(values) else 0.0
        unit = "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"
    if unit not in TS_UNITS:
        raise BookImportError([f"ts unit {unit!r}: use one of auto, {', '.join(TS_UNITS)}"])
    return np.round(values * TS_UNITS[unit]).astype(np.int64), unit


# ----------------------------------------------------------------------------------------------- prices


def tick_fn(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """``price -> tick`` for a named Upbit table or one fixed tick."""
    table = TICK_TABLES.get(spec)
    if table is None:
        try:
            fixed = float(spec)
        except ValueError:
            fixed = math.nan
        if not (math.isfinite(fixed) and fixed > 0):
            raise BookImportError([f"tick {spec!r}: use {', '.join(TICK_TABLES)} or a positive number"])
        return lambda p: np.full(np.shape(p), fixed)
    bounds = np.array([float(b) for b, _ in table][::-1])
    ticks = np.array([float(t) for _, t in table][::-1])
    bounds[0] = -np.inf

    def fn(p: np.ndarray) -> np.ndarray:
        return ticks[np.clip(np.searchsorted(bounds, p, side="right") - 1, 0, len(ticks) - 1)]

    return fn


def _on_ticks(prices: np.ndarray, tick: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(prices snapped to the nearest tick, mask of those that were off it); NaN stays NaN."""
    finite = np.isfinite(prices) & (prices > 0)
    safe = np.where(finite, prices, 1.0)
    step = tick(safe)
    q = safe / step
    n = np.round(q)
    off = finite & (np.abs(q - n) > 1e-6 * np.maximum(1.0, np.abs(q)) + 1e-9)
    snapped = np.where(finite, np.round(n * step, 10), prices)
    return snapped, off


# ----------------------------------------------------------------------------------------------- book


def _levels_of(table: pa.Table) -> int:
    pat = re.compile(r"^(ask_price|ask_size|bid_price|bid_size)_(\d+)$")
    nums = [int(m.group(2)) for c in table.column_names if (m := pat.match(c))]
    return max(nums, default=0)


def book_table_build(
    raw: pa.Table, *, options: ImportOptions, source: str = ""
) -> tuple[pa.Table, dict[str, Any]]:
    """Validate the snapshots and build the order-book day-file table; raises :class:`BookImportError`
    listing every problem found."""
    table = _apply_map(raw, options.columns, "order book")
    if "ts" not in table.column_names:
        raise BookImportError(["order book: no ts column (map one with --columns ts=NAME)"])
    available = _levels_of(table)
    if available == 0:
        raise BookImportError(
            ["order book: no ask_price_1.. columns (wide layout, or map them with --columns)"]
        )
    levels = options.levels or available
    if levels > available:
        raise BookImportError([f"order book: --levels {levels} but the input has {available}"])
    problems: list[str] = []
    missing = [
        f"{name}_{i}"
        for i in range(1, levels + 1)
        for name in BOOK_FIELDS
        if f"{name}_{i}" not in table.column_names
    ]
    if missing:
        raise BookImportError([f"order book: missing levels: {', '.join(missing[:12])}"])
    n = table.num_rows
    if n == 0:
        raise BookImportError(["order book: no rows"])
    ts, unit = _timestamps_ms(table.column("ts"), options.ts_unit, "order book")
    if n > 1 and (bad := np.diff(ts) <= 0).any():
        problems.append(f"order book: timestamps not increasing at {_rows(np.concatenate([[False], bad]))}")

    def block(name: str) -> np.ndarray:
        cols = []
        for i in range(1, levels + 1):
            col = table.column(f"{name}_{i}")
            if not (_numeric(col.type) or pa.types.is_null(col.type)):
                problems.append(f"order book: {name}_{i} is {col.type}, not a number")
                cols.append(np.full(n, np.nan))
                continue
            cols.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
        return np.column_stack(cols)

    px = {side: block(f"{side}_price") * options.price_scale for side in ("ask", "bid")}
    sz = {side: block(f"{side}_size") for side in ("ask", "bid")}
    if problems and any("not a number" in p for p in problems):
        raise BookImportError(problems)
    for side in ("ask", "bid"):
        p, s = px[side], sz[side]
        if options.allow_short_books:
            empty = (p == 0) & (s == 0)
            p[empty] = np.nan
            s[empty] = np.nan
        bad = ~np.isfinite(p) | ~np.isfinite(s)
        if options.allow_short_books:
            present = ~bad
            # Only whole, trailing levels may be empty; the best level never.
            hole = (
                (present[:, 1:] & bad[:, :-1]).any(axis=1)
                | bad[:, 0]
                | (np.isnan(p) != np.isnan(s)).any(axis=1)
            )
            if hole.any():
                problems.append(
                    f"order book: {side} levels missing (not only the deepest ones) in {_rows(hole)}"
                )
        elif bad.any():
            problems.append(
                f"order book: {side} prices/sizes missing or NaN in {_rows(bad.any(axis=1))} "
                "(--allow-short-books accepts empty deepest levels)"
            )
        with np.errstate(invalid="ignore"):
            if (neg := (s < 0).any(axis=1)).any():
                problems.append(f"order book: negative {side} sizes in {_rows(neg)}")
            if (nonpos := (p <= 0).any(axis=1)).any():
                problems.append(f"order book: {side} prices <= 0 in {_rows(nonpos)}")
            step = np.diff(p, axis=1)
            disorder = (step <= 0) if side == "ask" else (step >= 0)
            if (dis := disorder.any(axis=1)).any():
                order = "rising" if side == "ask" else "falling"
                problems.append(
                    f"order book: {side} levels not strictly {order} from level 1 in {_rows(dis)}"
                )
    tick = tick_fn(options.tick)
    rounded = 0
    for side in ("ask", "bid"):
        snapped, off = _on_ticks(px[side], tick)
        if off.any():
            if options.off_tick == "round":
                rounded += int(off.sum())
            else:
                problems.append(
                    f"order book: {side} prices off the {options.tick} tick in {_rows(off.any(axis=1))} "
                    "(--off-tick round rounds them to the nearest tick)"
                )
        px[side] = snapped
    with np.errstate(invalid="ignore"):
        crossed = px["bid"][:, 0] >= px["ask"][:, 0]
    if crossed.any():
        problems.append(f"order book: crossed or locked (best bid >= best ask) in {_rows(crossed)}")
    if problems:
        raise BookImportError(problems)
    cols: dict[str, np.ndarray] = {"ts": ts, "recv_ts": ts.copy()}
    for side in ("ask", "bid"):
        name = f"total_{side}_size"
        given = table.column(name).to_numpy(zero_copy_only=False) if name in table.column_names else None
        cols[name] = np.asarray(given, dtype=np.float64) if given is not None else np.nansum(sz[side], axis=1)
        for i in range(levels):
            cols[f"{side}_price_{i + 1}"] = px[side][:, i]
            cols[f"{side}_size_{i + 1}"] = sz[side][:, i]
    meta = _metadata(options, source=source)
    schema = dayfiles.orderbook_schema(levels)
    schema = schema.with_metadata({**(schema.metadata or {}), **meta})
    book = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
    return book, {"ts_unit": unit, "rounded": rounded, "levels": levels}


def _metadata(options: ImportOptions, *, source: str) -> dict[bytes, bytes]:
    return {
        b"source": b"import_book",
        b"source_file": source.encode(),
        b"price_scale": repr(float(options.price_scale)).encode(),
        b"tick": options.tick.encode(),
        b"fee_rate": repr(float(options.fee_rate)).encode(),
        dayfiles.SEGMENT_GAP_KEY: str(int(round(options.segment_gap_s * 1000))).encode(),
    }


def gap_table_build(ts: np.ndarray, *, segment_gap_s: float) -> pa.Table:
    """An ``import`` gap row per pause between snapshots longer than the segment gap (readers split there)."""
    gap_ms = int(round(segment_gap_s * 1000))
    idx = np.flatnonzero(np.diff(ts) > gap_ms) + 1
    return pa.table(
        {
            "ts_start": ts[idx - 1],
            "ts_end": ts[idx],
            "reason": [GAP_REASON] * len(idx),
            "detail": [
                f"no snapshot for {(ts[i] - ts[i - 1]) / 1000:g} s (segment gap {segment_gap_s:g} s)"
                for i in idx
            ],
        },
        schema=dayfiles.GAP_SCHEMA,
    )


# ----------------------------------------------------------------------------------------------- trades

_BUY = {"1", "+1", "buy", "b", "bid", "buyer"}
_SELL = {"-1", "sell", "s", "ask", "seller"}


def _sides_given(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(+1/-1/0 per trade, mask of values that are not a side); 0 = empty, to be inferred."""
    if pa.types.is_boolean(column.type):
        raise BookImportError(
            ["trades side: true/false is ambiguous (is it 'buyer is maker'?): use buy/sell or +1/-1"]
        )
    values = [None if v is None else str(v).strip().lower() for v in column.to_pylist()]
    out = np.zeros(len(values), dtype=np.int8)
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None or v in ("", "nan"):
            continue
        if v.endswith(".0"):
            v = v[:-2]
        if v in _BUY:
            out[i] = 1
        elif v in _SELL:
            out[i] = -1
        else:
            bad[i] = True
    return out, bad


def sides_infer(
    price: np.ndarray, trade_ts: np.ndarray, book_ts: np.ndarray, best_ask: np.ndarray, best_bid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(side per trade, method per trade: 1 quote, 2 tick rule, 3 default).

    From the last snapshot strictly before the trade: at or above its best ask = buyer-initiated (+1), at
    or below its best bid = seller-initiated (-1); otherwise (or with no snapshot before it) the tick rule:
    up from the last different trade price = +1, down = -1; a trade no rule decides gets +1."""
    j = np.searchsorted(book_ts, trade_ts, side="left") - 1
    has = j >= 0
    jj = np.clip(j, 0, None)
    ask = np.where(has, best_ask[jj], np.nan)
    bid = np.where(has, best_bid[jj], np.nan)
    side = np.zeros(len(price), dtype=np.int8)
    method = np.zeros(len(price), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        buy, sell = price >= ask, price <= bid
    side[buy], side[sell & ~buy] = 1, -1
    method[buy | sell] = 1
    move = np.zeros(len(price), dtype=np.int8)
    if len(price) > 1:
        move[1:] = np.sign(np.diff(price)).astype(np.int8)
    last = np.maximum.accumulate(np.where(move != 0, np.arange(len(price)), 0))
    tick_side = move[last]  # zero-tick trades take the last move's sign
    rest = method == 0
    by_tick = rest & (tick_side != 0)
    side[by_tick], method[by_tick] = tick_side[by_tick], 2
    default = rest & (tick_side == 0)
    side[default], method[default] = 1, 3
    return side, method


def trade_table_build(
    raw: pa.Table, *, book: pa.Table, options: ImportOptions, source: str = ""
) -> tuple[pa.Table, dict[str, int]]:
    """Validate trades (ts, price, volume, optional side and sequential_id) and build the trade table."""
    table = _apply_map(raw, options.trade_columns, "trades")
    absent = [c for c in ("ts", "price", "volume") if c not in table.column_names]
    if absent:
        raise BookImportError(
            [f"trades: missing columns {', '.join(absent)} (map them with --trade-columns)"]
        )
    n = table.num_rows
    ts, _unit = _timestamps_ms(table.column("ts"), options.ts_unit, "trades")
    problems: list[str] = []
    if n > 1 and (back := np.diff(ts) < 0).any():
        problems.append(f"trades: timestamps going backwards at {_rows(np.concatenate([[False], back]))}")
    nums = {}
    for name in ("price", "volume"):
        col = table.column(name)
        if not (_numeric(col.type) or pa.types.is_null(col.type)):
            raise BookImportError([f"trades: {name} is {col.type}, not a number"])
        nums[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
    price = nums["price"] * options.price_scale
    volume = nums["volume"]
    with np.errstate(invalid="ignore"):
        if (bad := ~np.isfinite(price) | (price <= 0)).any():
            problems.append(f"trades: price missing, NaN or <= 0 in {_rows(bad)}")
        if (bad := ~np.isfinite(volume) | (volume <= 0)).any():
            problems.append(f"trades: volume missing, NaN or <= 0 in {_rows(bad)}")
    price, off = _on_ticks(price, tick_fn(options.tick))
    rounded = 0
    if off.any():
        if options.off_tick == "round":
            rounded = int(off.sum())
        else:
            problems.append(f"trades: prices off the {options.tick} tick in {_rows(off)}")
    given = np.zeros(n, dtype=np.int8)
    if "side" in table.column_names:
        given, bad = _sides_given(table.column("side"))
        if bad.any():
            problems.append(f"trades: side is not buy/sell, bid/ask or +1/-1 in {_rows(bad)}")
    if problems:
        raise BookImportError(problems)
    arrays = dayfiles.book_arrays(book)
    inferred, method = sides_infer(price, ts, arrays.ts, arrays.ask_px[:, 0], arrays.bid_px[:, 0])
    todo = given == 0
    side = np.where(todo, inferred, given).astype(np.int8)
    if "sequential_id" in table.column_names:
        seq = table.column("sequential_id").to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        # ts * 1000 + the trade's rank within its millisecond (unique while < 1000 trades share one ms).
        first = np.searchsorted(ts, ts, side="left")
        rank = np.arange(n) - first
        seq = ts * 1000 + rank if n == 0 or rank.max() < 1000 else np.arange(n, dtype=np.int64)
    schema = dayfiles.TRADE_SCHEMA.with_metadata(
        {**(dayfiles.TRADE_SCHEMA.metadata or {}), **_metadata(options, source=source)}
    )
    trades = pa.table(
        {
            "ts": ts,
            "recv_ts": ts.copy(),
            "price": price,
            "volume": volume,
            "side": side,
            "sequential_id": seq,
        },
        schema=schema,
    )
    counts = {
        "rounded": rounded,
        "sides_given": int((~todo).sum()),
        "sides_quote": int((todo & (method == 1)).sum()),
        "sides_tick": int((todo & (method == 2)).sum()),
        "sides_default": int((todo & (method == 3)).sum()),
    }
    return trades, counts


# ----------------------------------------------------------------------------------------------- import


def _check_options(options: ImportOptions) -> None:
    problems = []
    if not MARKET_CODE_RE.fullmatch(options.market or ""):
        problems.append(f"market {options.market!r}: looks like KRW-ADA (upper case, one dash)")
    if not (math.isfinite(options.price_scale) and options.price_scale > 0):
        problems.append("price scale must be a positive number")
    if not (math.isfinite(options.segment_gap_s) and options.segment_gap_s > 0):
        problems.append("segment gap must be a positive number of seconds")
    if not (math.isfinite(options.fee_rate) and 0 <= options.fee_rate < 0.1):
        problems.append("fee rate must be a fraction between 0 and 0.1 (0.0005 = 0.05 %)")
    if options.off_tick not in ("refuse", "round"):
        problems.append("off-tick must be refuse or round")
    if options.levels is not None and options.levels < 1:
        problems.append("levels must be at least 1")
    if problems:
        raise BookImportError(problems)
    tick_fn(options.tick)


def book_import(
    *,
    book_path: str | Path,
    root: str | Path,
    options: ImportOptions,
    trades_path: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Validate and import one market's snapshots (and trades) into closed day files under ``root``.

    Raises :class:`BookImportError` (every problem found) or ``FileExistsError`` (days already there and
    not ``options.replace``); in both cases nothing is written."""
    _check_options(options)
    report = progress or (lambda stage, done, total: None)
    report("reading order book", 0, 0)
    book, info = book_table_build(table_read(book_path), options=options, source=Path(book_path).name)
    trades = None
    counts: dict[str, int] = {}
    if trades_path is not None:
        report("reading trades", 0, 0)
        trades, counts = trade_table_build(
            table_read(trades_path), book=book, options=options, source=Path(trades_path).name
        )
    ts = book.column("ts").to_numpy()
    gaps = gap_table_build(ts, segment_gap_s=options.segment_gap_s)
    tables = {"orderbook": book, "gap": gaps}
    if trades is not None:
        tables["trade"] = trades
    total = sum(t.num_rows for t in tables.values())
    done = 0

    def on_day(kind: str, day: Any, rows: int) -> None:
        nonlocal done
        done += rows
        report(f"writing {kind} {day}", done, total)

    written = dayfiles.write_closed_days(root, options.market, tables, replace=options.replace, on_day=on_day)
    return ImportResult(
        snapshots=book.num_rows,
        trades=trades.num_rows if trades is not None else 0,
        gaps=gaps.num_rows,
        levels=int(info["levels"]),
        days=written["days"],
        ts_unit=str(info["ts_unit"]),
        rounded_prices=int(info["rounded"]) + counts.get("rounded", 0),
        sides_given=counts.get("sides_given", 0),
        sides_quote=counts.get("sides_quote", 0),
        sides_tick=counts.get("sides_tick", 0),
        sides_default=counts.get("sides_default", 0),
    )
