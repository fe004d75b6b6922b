"""Day-file layouts compared in one run: how many files, what a flush costs, what a training read costs,
what a crash loses.

Candidates (all through :class:`market.dayfiles.DayFileWriter`'s buffering and table building, so only the
layout differs):

* ``old``    -- the previous layout: every flush writes a complete Parquet segment per market per kind
                (temp file, fsync, atomic rename, directory fsync), sequentially;
* ``wal``    -- the chosen layout: every flush appends one Arrow record batch per market per kind to that
                market's hourly WAL (``part-N.arrows``), fdatasynced in parallel; rolled into Parquet at the
                hour (``DayFileWriter`` as shipped);
* ``shared`` -- one Parquet segment per flush per kind for *all* markets, with a ``market`` column (the
                other candidate of issue 16): few fsyncs, but a market's day is spread over every segment.

Flow: ``--markets`` synthetic KRW markets; per market ``--books`` order books/s (30 levels) and ``--trades``
trades/s, the first tenth of the markets 5x busier; the fake clock advances in 100 ms ticks and the writer
flushes every 2 s, as in the collector.

Part 1, write cost, ``--seconds`` of flow per candidate: process CPU per second of data (the share of a core
the writer needs), wall time per flush (how long the collector's event loop is held: median and p99), files
created per market, extrapolated to a day.
Part 2, one busy market: files per market per day while collecting and the time to read its whole day (order
book + trades, as training does through ``read_day``). ``wal``: a full simulated day written (fsync switched
off for the generation only: file count and read cost do not depend on it). ``old``/``shared``: 10 minutes
written and read, times 144 (their read cost is per file, linear in the day).
Part 3, crash loss: a writer subprocess at 2 s flushes (real fsync) is SIGKILLed at random moments; the loss
is kill time minus the newest row that reads back.

Usage: ``nice -n 10 .venv/bin/python bench/bench_dayfiles.py [--markets 200] [--seconds 60] [--kills 3]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from market import dayfiles  # noqa: E402
from market.dayfiles import DayFileWriter  # noqa: E402

START_MS = 1_772_334_000_000  # 2026-03-01 12:00 KST
FLUSH_MS = 2000
TICK_MS = 100
LEVELS = 30


class Book:
    """What ``DayFileWriter.add_orderbook`` reads of an order-book record."""

    __slots__ = ("code", "packed", "recv_ts", "total_ask_size", "total_bid_size", "ts")

    def __init__(self, code: str, ts: int, packed: bytes) -> None:
        self.code, self.ts, self.recv_ts, self.packed = code, ts, ts, packed
        self.total_ask_size = self.total_bid_size = 12.5


class Trade:
    __slots__ = ("code", "price", "recv_ts", "sequential_id", "side", "ts", "volume")

    def __init__(self, code: str, ts: int, sid: int) -> None:
        self.code, self.ts, self.recv_ts, self.sequential_id = code, ts, ts, sid
        self.price, self.volume, self.side = 150_000_000.0, 0.01, 1


def _packed(rng: np.random.Generator) -> bytes:
    mid = 150_000_000.0
    cube = np.empty((LEVELS, 4))
    cube[:, 0] = mid + 1000 * np.arange(1, LEVELS + 1)
    cube[:, 1] = mid - 1000 * np.arange(LEVELS)
    cube[:, 2:] = rng.random((LEVELS, 2))
    return cube.astype("<f8").tobytes()


class OldLayoutWriter(DayFileWriter):
    """The previous writer: one complete Parquet segment per market per kind per flush."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_part: dict[tuple[str, str], int] = {}

    def _write_buffers(self, buffers: dict[tuple[str, str], list[Any]], now: int) -> list[Path]:
        out = []
        for (kind, market), rows in buffers.items():
            if not rows:
                continue
            directory = dayfiles.day_dir(self.root, kind, market, self.day)
            if (kind, market) not in self._next_part:
                directory.mkdir(parents=True, exist_ok=True)
                self._next_part[(kind, market)] = dayfiles.next_part_number(directory)
            n = self._next_part[(kind, market)]
            path = directory / f"part-{n:05d}.parquet"
            dayfiles.write_table_atomic(self._table(kind, rows), path)
            self._next_part[(kind, market)] = n + 1
            self.segments_written += 1
            self.rows_written += len(rows)
            out.append(path)
        return out


class SharedSegmentWriter(DayFileWriter):
    """One Parquet segment per flush per kind holding every market (a ``market`` column)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._n = 0

    def _write_buffers(self, buffers: dict[tuple[str, str], list[Any]], now: int) -> list[Path]:
        out = []
        for kind in dayfiles.KINDS:
            parts = [
                self._table(kind, rows).append_column(
                    "market", pa.array([market] * len(rows), pa.string()).dictionary_encode()
                )
                for (k, market), rows in buffers.items()
                if k == kind and rows
            ]
            if not parts:
                continue
            table = pa.concat_tables(parts)
            path = self.root / "_all" / kind / self.day.isoformat() / f"seg-{self._n:06d}.parquet"
            dayfiles.write_table_atomic(table, path)
            self.segments_written += 1
            self.rows_written += table.num_rows
            out.append(path)
        self._n += 1
        return out


CANDIDATES: dict[str, type[DayFileWriter]] = {
    "old": OldLayoutWriter,
    "wal": DayFileWriter,
    "shared": SharedSegmentWriter,
}


def _rates(markets: list[str], books: float, trades: float) -> dict[str, tuple[float, float]]:
    busy = max(1, len(markets) // 10)
    return {m: ((books * 5, trades * 5) if i < busy else (books, trades)) for i, m in enumerate(markets)}


def _feed(
    writer: DayFileWriter, rates: dict[str, tuple[float, float]], seconds: float, packed: dict[str, bytes],
    clock: list[int], on_flush: Callable[[float], None] | None = None, rng: random.Random | None = None,
    tick_ms: int = TICK_MS,
) -> None:  # fmt: skip
    """Drive the writer like the collector: records arrive each 100 ms tick, ``tick()`` after each."""
    rng = rng or random.Random(1)
    debt = {m: [rng.random(), rng.random()] for m in rates}
    sid = 0
    end = clock[0] + int(seconds * 1000)
    while clock[0] < end:
        clock[0] += tick_ms
        now = clock[0]
        for m, (b_rate, t_rate) in rates.items():
            d = debt[m]
            d[0] += b_rate * tick_ms / 1000
            d[1] += t_rate * tick_ms / 1000
            while d[0] >= 1:
                d[0] -= 1
                writer.add_orderbook(Book(m, now, packed[m]))
            while d[1] >= 1:
                d[1] -= 1
                sid += 1
                writer.add_trade(Trade(m, now, sid))
        due = now - writer._last_flush >= writer.flush_interval_ms
        t0 = time.perf_counter()
        writer.tick(now)
        if due and on_flush is not None:
            on_flush(time.perf_counter() - t0)


def _files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and p.name.startswith(("part-", "seg-")))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def part1(
    markets: int, seconds: float, books: float, trades: float, work: Path
) -> dict[str, dict[str, float]]:
    codes = [f"KRW-M{i:03d}" for i in range(markets)]
    rates = _rates(codes, books, trades)
    rng = np.random.default_rng(7)
    packed = {m: _packed(rng) for m in codes}
    out = {}
    for name, cls in CANDIDATES.items():
        root = work / f"p1-{name}"
        clock = [START_MS]
        writer = cls(root, markets=codes, clock=lambda: clock[0], levels=LEVELS)  # noqa: B023 - used in-loop
        flushes: list[float] = []
        c0, w0 = time.process_time(), time.perf_counter()
        _feed(writer, rates, seconds, packed, clock, on_flush=flushes.append)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        writer.close()
        files = _files(root)
        out[name] = {
            "cpu_per_s": cpu / seconds,
            "wall_per_s": wall / seconds,
            "flush_p50_ms": _pct(flushes, 50) * 1000,
            "flush_p99_ms": _pct(flushes, 99) * 1000,
            "files": files,
            "files_per_market_day": files / markets * 86400 / seconds if name != "wal" else float("nan"),
            "rows": writer.rows_written,
        }
        shutil.rmtree(root, ignore_errors=True)
    return out


def _timed_reads(fn: Callable[[], int], repeat: int = 3) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``fn`` (CPU: what it costs on a quiet core, less noisy under load)."""
    times, cpus, rows = [], [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpus), rows


def _book_arrays_stacked(table: Any) -> Any:
    """``dayfiles.book_arrays`` before it filled its blocks in row slices: each level's whole-day column
    stacked (the baseline of the day read)."""
    levels = dayfiles.table_levels(table)

    def block(name: str) -> np.ndarray:
        cols = [table.column(f"{name}_{i}").to_numpy(zero_copy_only=False) for i in range(1, levels + 1)]
        return np.ascontiguousarray(np.column_stack(cols).astype(np.float64, copy=False))

    return [block(name) for name in ("ask_price", "ask_size", "bid_price", "bid_size")]


def part2(books: float, trades: float, work: Path, others: int) -> dict[str, dict[str, float]]:
    """One busy market's day (``books*5``/s, ``trades*5``/s); ``others`` quiet markets alongside for
    ``shared`` (whose segments hold every market)."""
    code = "KRW-BTC"
    rates = {code: (books * 5, trades * 5)}
    rng = np.random.default_rng(3)
    out: dict[str, dict[str, float]] = {}
    real_sync, real_dir = dayfiles._fdatasync, dayfiles._fsync_dir
    dayfiles._fdatasync = lambda fd: None  # generation only: counts and read costs do not depend on fsync
    dayfiles._fsync_dir = lambda directory: None
    try:
        # wal: a whole day, counting the files of the market just before midnight closes it.
        root = work / "p2-wal"
        clock = [START_MS - 12 * 3_600_000]  # 00:00 KST
        writer = DayFileWriter(root, markets=[code], clock=lambda: clock[0], levels=LEVELS)
        packed = {code: _packed(rng)}
        t0 = time.perf_counter()
        _feed(writer, rates, 86400 - 1, packed, clock, tick_ms=500)  # records in 0.5 s bursts, same flushes
        gen = time.perf_counter() - t0
        day = writer.day
        max_files = _files(root)
        writer.close()
        writer.roll_pending(None)

        def read_wal_day() -> int:
            book = dayfiles.read_day(root, "orderbook", code, day)
            trade = dayfiles.read_day(root, "trade", code, day)
            dayfiles.book_arrays(book)
            return book.num_rows + trade.num_rows

        def read_wal_day_stacked() -> int:
            book = dayfiles.read_day(root, "orderbook", code, day)
            trade = dayfiles.read_day(root, "trade", code, day)
            _book_arrays_stacked(book)
            return book.num_rows + trade.num_rows

        # The same day read with the earlier book_arrays (the baseline of the block-filling one), interleaved.
        timed = [(_timed_reads(read_wal_day, 1), _timed_reads(read_wal_day_stacked, 1)) for _ in range(3)]
        secs, cpu, rows = (statistics.median(t[0][k] for t in timed) for k in range(3))
        out["wal"] = {"files_per_market_day": max_files, "read_day_s": secs, "read_cpu_s": cpu, "rows": rows,
                      "gen_s": gen}  # fmt: skip
        secs, cpu, rows = (statistics.median(t[1][k] for t in timed) for k in range(3))
        out["wal-stacked"] = {"files_per_market_day": max_files, "read_day_s": secs, "read_cpu_s": cpu,
                              "rows": rows}  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)

        # old and shared: 10 minutes, read and scaled to the day.
        span = 600
        scale = 86400 / span
        codes = [code] + [f"KRW-Q{i:03d}" for i in range(others)]
        all_rates = {**{m: (books, trades) for m in codes[1:]}, **rates}
        all_packed = {m: _packed(rng) for m in codes}
        for name, cls in (("old", OldLayoutWriter), ("shared", SharedSegmentWriter)):
            root = work / f"p2-{name}"
            clock = [START_MS]
            use = all_rates if name == "shared" else rates
            writer = cls(root, markets=list(use), clock=lambda: clock[0], levels=LEVELS)  # noqa: B023
            _feed(writer, use, span, all_packed, clock)
            writer.close()
            day = writer.day
            if name == "old":
                files = _files(root)

                def read_old() -> int:
                    book = dayfiles.read_day(root, "orderbook", code, day)  # noqa: B023
                    trade = dayfiles.read_day(root, "trade", code, day)  # noqa: B023
                    dayfiles.book_arrays(book)
                    return book.num_rows + trade.num_rows

                secs, cpu, rows = _timed_reads(read_old)
            else:
                files = _files(root)  # every segment holds this market too

                def read_shared() -> int:
                    n = 0
                    for kind in ("orderbook", "trade"):
                        paths = sorted((root / "_all" / kind / day.isoformat()).glob("seg-*.parquet"))  # noqa: B023
                        tables = [pq.read_table(p, filters=[("market", "=", code)]) for p in paths]
                        table = pa.concat_tables(tables).drop_columns(["market"]).sort_by("ts")
                        if kind == "orderbook":
                            dayfiles.book_arrays(table)
                        n += table.num_rows
                    return n

                secs, cpu, rows = _timed_reads(read_shared)
            out[name] = {
                "files_per_market_day": files * scale,
                "read_day_s": secs * scale,
                "read_cpu_s": cpu * scale,
                "rows": rows * scale,
            }
            shutil.rmtree(root, ignore_errors=True)
    finally:
        dayfiles._fdatasync, dayfiles._fsync_dir = real_sync, real_dir
    return out


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
sys.argv_name = sys.argv[1]
from bench.bench_dayfiles import CANDIDATES, Book, Trade, _packed
import numpy as np
cls = CANDIDATES[sys.argv[1]]
codes = [f"KRW-M{i:03d}" for i in range(50)]
rng = np.random.default_rng(1)
packed = {m: _packed(rng) for m in codes}
writer = cls(sys.argv[2], markets=codes, levels=30)
sid = 0
print("ready", flush=True)
while True:
    now = int(time.time() * 1000)
    for m in codes:
        writer.add_orderbook(Book(m, now, packed[m]))
        sid += 1
        writer.add_trade(Trade(m, now, sid))
    writer.tick()
    time.sleep(0.1)
"""


def part3(kills: int, work: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    rng = random.Random(5)
    for name in ("old", "wal"):
        losses = []
        for i in range(kills):
            root = work / f"p3-{name}-{i}"
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, name, str(root), str(ROOT)],
                stdout=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            try:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                time.sleep(3 + rng.random() * 2)
                kill_ms = int(time.time() * 1000)
                os.killpg(proc.pid, signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            newest = 0
            for day in dayfiles.list_days(root, "orderbook", "KRW-M000"):
                for code in ("KRW-M000", "KRW-M049"):
                    t = dayfiles.read_day(root, "orderbook", code, day)
                    if t.num_rows:
                        newest = max(newest, int(max(t.column("recv_ts").to_pylist())))
            losses.append((kill_ms - newest) / 1000 if newest else float("nan"))
            shutil.rmtree(root, ignore_errors=True)
        out[name] = losses
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markets", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of flow written per candidate")
    ap.add_argument("--books", type=float, default=1.0, help="order books/s of a quiet market (busy: 5x)")
    ap.add_argument("--trades", type=float, default=0.5, help="trades/s of a quiet market (busy: 5x)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: 1,2,3")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    work = Path(
        tempfile.mkdtemp(prefix="bench-dayfiles-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None)
    )
    try:
        print(f"# day-file layouts ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
              f"{os.getloadavg()[0]:.1f}): {args.markets} markets, {args.books} books/s + {args.trades} "
              f"trades/s per quiet market (first tenth 5x), 30 levels, flush every 2 s; "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        if "1" not in skip:
            p1 = part1(args.markets, args.seconds, args.books, args.trades, work)
            print(f"\n## write cost, {args.seconds:g} s of flow (rows/candidate {p1['wal']['rows']})")
            print(f"{'layout':8} {'CPU s/s':>8} {'flush p50 ms':>13} {'flush p99 ms':>13} {'files':>7} "
                  f"{'files/market/day':>17}")  # fmt: skip
            for name, r in p1.items():
                print(f"{name:8} {r['cpu_per_s']:8.3f} {r['flush_p50_ms']:13.1f} {r['flush_p99_ms']:13.1f} "
                      f"{r['files']:7.0f} {r['files_per_market_day']:17.0f}")  # fmt: skip
            old, wal = p1["old"], p1["wal"]
            print(f"ratio old/wal: CPU {old['cpu_per_s'] / wal['cpu_per_s']:.2f}x, flush p50 "
                  f"{old['flush_p50_ms'] / wal['flush_p50_ms']:.1f}x, flush p99 "
                  f"{old['flush_p99_ms'] / wal['flush_p99_ms']:.1f}x, "
                  f"files {old['files'] / wal['files']:.0f}x")  # fmt: skip
        if "2" not in skip:
            p2 = part2(args.books, args.trades, work, others=args.markets - 1)
            print(f"\n## one busy market's day ({args.books * 5:g} books/s + {args.trades * 5:g} trades/s)")
            print(f"{'layout':8} {'files/market/day':>17} {'read day s':>11} {'read CPU s':>11} {'rows':>9}")
            for name, r in p2.items():
                print(f"{name:8} {r['files_per_market_day']:17.0f} {r['read_day_s']:11.3f} "
                      f"{r['read_cpu_s']:11.3f} {r['rows']:9.0f}")  # fmt: skip
            print(
                "(wal: a full day written and read; wal-stacked: the same day, the earlier book_arrays; "
                "old/shared: 10 minutes x 144)"
            )
            print(f"ratio wal-stacked/wal (book_arrays in row slices): read "
                  f"{p2['wal-stacked']['read_day_s'] / p2['wal']['read_day_s']:.2f}x, CPU "
                  f"{p2['wal-stacked']['read_cpu_s'] / p2['wal']['read_cpu_s']:.2f}x")  # fmt: skip
            files_ratio = p2["old"]["files_per_market_day"] / p2["wal"]["files_per_market_day"]
            print(f"ratio old/wal: files {files_ratio:.0f}x, "
                  f"read {p2['old']['read_day_s'] / p2['wal']['read_day_s']:.1f}x (CPU "
                  f"{p2['old']['read_cpu_s'] / p2['wal']['read_cpu_s']:.1f}x); shared/wal read "
                  f"{p2['shared']['read_day_s'] / p2['wal']['read_day_s']:.1f}x")  # fmt: skip
        if "3" not in skip:
            p3 = part3(args.kills, work)
            print(f"\n## crash loss (SIGKILL at random, 50 markets, flush 2 s), seconds, {args.kills} kills")
            for name, losses in p3.items():
                print(f"{name:8} median {statistics.median(losses):.2f}  max {max(losses):.2f}  all "
                      f"{', '.join(f'{x:.2f}' for x in losses)}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
