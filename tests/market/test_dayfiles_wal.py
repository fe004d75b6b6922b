"""The day-file layout bounded by markets x hours: per-market WALs (Arrow IPC streams) appended and fsynced
every flush, rolled into Parquet at the hour; torn tails ignored; a roll interrupted at any step neither
loses nor doubles rows; old-layout days (one Parquet segment per flush) still read; a SIGKILLed writer
process loses at most the interval it was collecting."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from market import dayfiles
from market.dayfiles import DayFileWriter, day_dir, is_complete, read_day, segment_paths

from .collector.factories import FakeClock, book, kst_ms, trade

DAY = dt.date(2026, 3, 1)
ROOT = Path(__file__).resolve().parents[2]


def _names(root: Path, kind: str = "orderbook", market: str = "KRW-BTC", day: dt.date = DAY) -> list[str]:
    directory = day_dir(root, kind, market, day)
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("part-"))


def test_files_per_market_are_bounded_by_hours_not_flushes(tmp_path: Path) -> None:
    """Five roll intervals of 2 s flushes: five files per kind (the last still a WAL), every row kept."""
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], roll_interval=60.0, roll_budget=None, clock=clock)
    sid = 0
    for _ in range(149):  # 10:00:00 - 10:04:58 in 2-second flushes
        for _ in range(4):
            writer.add_orderbook(book("KRW-BTC", clock.advance(500)))
            writer.add_trade(trade("KRW-BTC", clock.now, sid=sid))
            sid += 1
        writer.tick()
    assert writer.segments_written == 2 * 149  # 149 appends per kind, ...
    names = _names(tmp_path)
    assert len(names) == 5, names  # ... into 5 files: one per minute
    assert names[:4] == [f"part-0000{i}.parquet" for i in range(4)] and names[4] == "part-00004.arrows"
    # A file holds the flushes made in its minute (the first began at 10:00:02).
    rows = [pq.read_metadata(day_dir(tmp_path, "orderbook", "KRW-BTC", DAY) / n).num_rows for n in names[:4]]
    assert rows == [116, 120, 120, 120]
    table = read_day(tmp_path, "orderbook", "KRW-BTC", DAY)
    assert table.num_rows == 596  # nothing doubled
    ts = table.column("ts").to_numpy()
    assert (ts[1:] > ts[:-1]).all()
    assert read_day(tmp_path, "trade", "KRW-BTC", DAY).column("sequential_id").to_pylist() == list(range(596))


def test_a_torn_tail_is_ignored_on_read_and_never_appended_to(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    sizes = []
    wal = day_dir(tmp_path, "trade", "KRW-BTC", DAY) / "part-00000.arrows"
    for i in range(3):
        writer.add_trade(trade("KRW-BTC", clock.advance(100), sid=i))
        writer.flush()
        sizes.append(wal.stat().st_size)
    data = wal.read_bytes()
    # The process dies at every possible byte of the third append: the first two appends always read back.
    for cut in range(sizes[1], sizes[2]):
        wal.write_bytes(data[:cut])
        got = read_day(tmp_path, "trade", "KRW-BTC", DAY).column("sequential_id").to_pylist()
        assert got == [0, 1], cut
    # Disk blocks allocated but never written (zeros after a crash) read as the end of the stream.
    wal.write_bytes(data[: sizes[1]] + b"\0" * 64)
    assert read_day(tmp_path, "trade", "KRW-BTC", DAY).num_rows == 2
    wal.write_bytes(data[: sizes[1]] + b"\xff\xff\xff\xff\x40\x00\x00\x00garbage")  # a header, no body
    assert read_day(tmp_path, "trade", "KRW-BTC", DAY).num_rows == 2
    # A restart rolls the torn WAL (its whole appends) into Parquet and writes on in a new file.
    writer2 = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock, roll_budget=None)
    writer2.add_trade(trade("KRW-BTC", clock.advance(100), sid=5))
    writer2.tick(clock.advance(5000))
    assert _names(tmp_path, "trade") == ["part-00000.parquet", "part-00001.arrows"]
    got = read_day(tmp_path, "trade", "KRW-BTC", DAY).column("sequential_id").to_pylist()
    assert got == [0, 1, 5]
    # A WAL whose schema never made it to disk holds nothing and is not an error.
    (day_dir(tmp_path, "trade", "KRW-BTC", DAY) / "part-00007.arrows").write_bytes(b"\xff\xff")
    assert read_day(tmp_path, "trade", "KRW-BTC", DAY).num_rows == 3


def test_a_roll_interrupted_between_parquet_and_unlink_neither_doubles_nor_loses(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    for _ in range(3):
        writer.add_orderbook(book("KRW-BTC", clock.advance(100)))
        writer.flush()
    writer.close()
    directory = day_dir(tmp_path, "orderbook", "KRW-BTC", DAY)
    wal = directory / "part-00000.arrows"
    # The Parquet twin was renamed into place, then the process died before unlinking the WAL.
    dayfiles.write_table_atomic(dayfiles.read_wal(wal), directory / "part-00000.parquet")
    assert [p.name for p in segment_paths(directory)] == ["part-00000.parquet"]
    assert read_day(tmp_path, "orderbook", "KRW-BTC", DAY).num_rows == 3
    # A crash while writing the Parquet file left only its temp file: the WAL is still the data.
    (directory / "part-00000.parquet").unlink()
    (directory / ".part-00000.parquet.123.tmp").write_bytes(b"PAR1 torn")
    assert read_day(tmp_path, "orderbook", "KRW-BTC", DAY).num_rows == 3
    DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock).close()  # restart: cleans up and rolls
    assert _names(tmp_path) == ["part-00000.parquet"]
    assert not list(directory.glob(".*tmp"))
    assert read_day(tmp_path, "orderbook", "KRW-BTC", DAY).num_rows == 3


def test_old_layout_days_read_and_continue(tmp_path: Path) -> None:
    """A day begun by the old writer (a Parquet segment per flush) reads with the new WALs after it."""
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    directory = day_dir(tmp_path, "trade", "KRW-BTC", DAY)
    legacy = DayFileWriter(tmp_path, clock=clock)
    for i in range(3):  # what the old layout left: part-00000..00002.parquet, one per flush
        legacy.add_trade(trade("KRW-BTC", clock.advance(100), sid=i))
        table = legacy._table("trade", legacy._buffers.pop(("trade", "KRW-BTC")))
        dayfiles.write_table_atomic(table, directory / f"part-0000{i}.parquet")
    legacy._pending = 0
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    writer.add_trade(trade("KRW-BTC", clock.advance(100), sid=3))
    writer.close()
    assert _names(tmp_path, "trade") == [f"part-0000{i}.parquet" for i in range(3)] + ["part-00003.arrows"]
    got = read_day(tmp_path, "trade", "KRW-BTC", DAY).column("sequential_id").to_pylist()
    assert got == [0, 1, 2, 3]
    assert dayfiles.last_recorded_ts(tmp_path, "KRW-BTC", DAY) == clock.now
    # Compaction of the closed day folds both layouts into the one day file.
    dayfiles.mark_complete(directory)
    path = dayfiles.compact_day(tmp_path, "trade", "KRW-BTC", DAY)
    assert path is not None and pq.read_table(path).column("sequential_id").to_pylist() == [0, 1, 2, 3]
    assert [p.name for p in segment_paths(directory)] == ["part-00000.parquet"]


def test_the_roll_budget_spreads_the_work_and_the_day_closes_after_its_rolls(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 23, 59))
    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
    writer = DayFileWriter(tmp_path, markets=markets, clock=clock, roll_budget=0.0)
    for code in markets:
        writer.add_orderbook(book(code, clock.advance(10)))
    writer.flush()
    clock.now = kst_ms(2026, 3, 2, 0, 0, 1)
    writer.tick()  # midnight: three WALs to roll, one per tick with a zero budget
    rolled = [is_complete(day_dir(tmp_path, "orderbook", code, DAY)) for code in markets]
    assert rolled == [False, False, False]  # not closed while a WAL of the day is still unrolled
    writer.tick()
    writer.tick()
    for code in markets:
        directory = day_dir(tmp_path, "orderbook", code, DAY)
        assert is_complete(directory) and _names(tmp_path, market=code) == ["part-00000.parquet"]
        assert (directory / dayfiles.COMPLETE_MARKER).read_text().split() == ["part-00000.parquet"]


def test_orphan_wals_of_a_market_taken_over_are_rolled_at_midnight(tmp_path: Path) -> None:
    """Another process wrote KRW-ETH earlier that day and died; this one took the market over mid-day."""
    clock = FakeClock(kst_ms(2026, 3, 1, 20))
    other = DayFileWriter(tmp_path, markets=["KRW-ETH"], clock=clock)
    other.add_orderbook(book("KRW-ETH", clock.advance(10)))
    other.flush()  # SIGKILLed here: its WAL is left open
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock, roll_budget=None)
    writer.add_orderbook(book("KRW-ETH", clock.advance(10)))  # the takeover
    writer.flush()
    assert _names(tmp_path, market="KRW-ETH") == ["part-00000.arrows", "part-00001.arrows"]
    writer.tick(kst_ms(2026, 3, 2, 0, 0, 1))
    assert _names(tmp_path, market="KRW-ETH") == ["part-00000.parquet", "part-00001.parquet"]
    assert is_complete(day_dir(tmp_path, "orderbook", "KRW-ETH", DAY))
    assert read_day(tmp_path, "orderbook", "KRW-ETH", DAY).num_rows == 2


def test_bytes_per_market_are_counted(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    writer = DayFileWriter(tmp_path, clock=clock)
    writer.add_orderbook(book("KRW-BTC", clock.now))
    writer.add_trade(trade("KRW-ETH", clock.now, sid=1))
    writer.flush()
    sizes = {
        code: sum(p.stat().st_size for p in tmp_path.glob(f"*/{code}/*/part-*.arrows"))
        for code in ("KRW-BTC", "KRW-ETH")
    }
    assert writer.bytes_by_market["KRW-ETH"] == sizes["KRW-ETH"] > 0  # everything appended for it
    assert writer.bytes_by_market["KRW-BTC"] > 30 * 4 * 8  # a 30-level book is at least its doubles


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from market.dayfiles import DayFileWriter
from market.upbit.records import TradeRecord
writer = DayFileWriter(sys.argv[1], markets=["KRW-BTC"], flush_interval=0.05)
sid = 0
while True:
    now = int(time.time() * 1000)
    for _ in range(50):
        writer.add_trade(TradeRecord("KRW-BTC", now, now, 100.0, 0.5, 1, sid))
        sid += 1
    writer.flush()
    print(sid, flush=True)  # durable up to here
"""


def test_sigkill_mid_append_loses_nothing_that_was_flushed(tmp_path: Path) -> None:
    """A writer process killed while appending: every row it reported flushed reads back, in order, once."""
    for attempt in range(3):
        data = tmp_path / f"data{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data), str(ROOT)],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        flushed = 0
        try:
            while flushed < 2000 + 1000 * attempt:
                line = proc.stdout.readline()
                assert line, "writer process died"
                flushed = int(line)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for line in proc.stdout.read().split():  # reported before the kill landed
            flushed = max(flushed, int(line))
        days = dayfiles.list_days(data, "trade", "KRW-BTC")
        got = dayfiles.read_days(data, "trade", "KRW-BTC", days)
        sids = got.column("sequential_id").to_pylist()
        assert len(sids) >= flushed and sids == list(range(len(sids)))  # a prefix: nothing lost or doubled
        assert len(sids) - flushed <= 50  # at most the one append in flight
        # The restarted writer rolls the torn WAL; the data is unchanged.
        DayFileWriter(data, markets=["KRW-BTC"], roll_budget=None).close()
        again = dayfiles.read_days(data, "trade", "KRW-BTC", days).column("sequential_id").to_pylist()
        assert again == sids and not list(data.glob("*/*/*/*.arrows"))
        time.sleep(0.01 * attempt)


def test_read_segment_reads_both_formats(tmp_path: Path) -> None:
    table = pa.table({"ts": [1, 2], "recv_ts": [1, 2]})
    pq.write_table(table, tmp_path / "part-00000.parquet")
    with open(tmp_path / "part-00001.arrows", "wb") as fh, pa.ipc.new_stream(fh, table.schema) as w:
        w.write_table(table)
    for name in ("part-00000.parquet", "part-00001.arrows"):
        got = dayfiles.read_segment(tmp_path / name, columns=["recv_ts"])
        assert got is not None and got.column_names == ["recv_ts"] and got.num_rows == 2
    assert [p.name for p in segment_paths(tmp_path)] == ["part-00000.parquet", "part-00001.arrows"]


def test_a_market_handed_over_between_writers_keeps_every_row(tmp_path: Path) -> None:
    """Sharding: writer A releases KRW-ETH (rows flushed, WAL closed), B adopts it (A's WAL rolled, B's rows
    in a new file); neither rolls or recovers the other's markets at start."""
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    a = DayFileWriter(tmp_path, clock=clock, recover_at_start=False)
    a.markets_adopt(["KRW-BTC", "KRW-ETH"])
    for code in ("KRW-BTC", "KRW-ETH"):
        a.add_orderbook(book(code, clock.advance(10)))
    a.flush()
    a.add_orderbook(book("KRW-ETH", clock.advance(10)))  # buffered, not flushed yet
    b = DayFileWriter(tmp_path, clock=clock, recover_at_start=False, roll_budget=None)
    assert _names(tmp_path, market="KRW-BTC") == ["part-00000.arrows"]  # B did not touch A's markets
    a.markets_release(["KRW-ETH"])
    assert "KRW-ETH" not in a.markets and read_day(tmp_path, "orderbook", "KRW-ETH", DAY).num_rows == 2
    b.markets_adopt(["KRW-ETH"])
    b.add_orderbook(book("KRW-ETH", clock.advance(10)))
    b.tick(clock.advance(3000))
    assert _names(tmp_path, market="KRW-ETH") == ["part-00000.parquet", "part-00001.arrows"]
    assert read_day(tmp_path, "orderbook", "KRW-ETH", DAY).num_rows == 3
    a.add_orderbook(book("KRW-BTC", clock.advance(10)))
    a.close()
    assert _names(tmp_path, market="KRW-BTC") == ["part-00000.arrows"]  # A's own WAL: appended, not split
    assert read_day(tmp_path, "orderbook", "KRW-BTC", DAY).num_rows == 2


def test_adopting_no_market_recovers_nothing(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    other = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    other.add_orderbook(book("KRW-BTC", clock.now))
    other.flush()  # another live shard's open WAL
    shard = DayFileWriter(tmp_path, clock=clock, recover_at_start=False, roll_budget=None)
    shard.markets_adopt([])
    shard.tick(clock.advance(3000))
    assert _names(tmp_path) == ["part-00000.arrows"]  # untouched


def test_a_failed_fsync_retires_the_wals_and_the_next_flush_starts_new_ones(
    tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    clock = FakeClock(kst_ms(2026, 3, 1, 10))
    markets = [f"KRW-M{i}" for i in range(6)]  # enough WALs for the parallel fsync path
    writer = DayFileWriter(tmp_path, markets=markets, clock=clock)
    for code in markets:
        writer.add_orderbook(book(code, clock.advance(1)))
    real = dayfiles._fdatasync
    calls = {"n": 0}

    def eio_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # during the flush's parallel fsync
            raise OSError(5, "Input/output error")
        real(fd)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dayfiles, "_fdatasync", eio_once)
        with pytest.raises(OSError):
            writer.flush()
    for code in markets:
        writer.add_orderbook(book(code, clock.advance(1)))
    writer.flush()
    for code in markets:
        # The WAL whose durability was unknown is closed; the next append went to a new file.
        assert _names(tmp_path, market=code) == ["part-00000.arrows", "part-00001.arrows"]
        assert read_day(tmp_path, "orderbook", code, DAY).num_rows == 2
    writer.close()


def test_read_day_sorts_only_what_is_out_of_order(tmp_path: Path) -> None:
    directory = day_dir(tmp_path, "trade", "KRW-BTC", DAY)
    directory.mkdir(parents=True)
    t0 = kst_ms(2026, 3, 1, 10)
    rows = {"recv_ts": [t0, t0], "price": [1.0, 1.0], "volume": [1.0, 1.0], "side": [1, -1]}
    for n, (ts, sid) in enumerate((([t0 + 5, t0 + 6], [3, 4]), ([t0 + 1, t0 + 2], [1, 2]))):
        table = pa.table({"ts": ts, **rows, "sequential_id": sid}, schema=dayfiles.TRADE_SCHEMA)
        pq.write_table(table, directory / f"part-0000{n}.parquet")
    got = read_day(tmp_path, "trade", "KRW-BTC", DAY)
    assert got.column("sequential_id").to_pylist() == [1, 2, 3, 4]  # a later file held earlier trades


def test_book_arrays_are_the_columns_stacked_whatever_the_chunking() -> None:
    """Many files' batches, one long batch, missing levels (null) and a market with fewer levels: the blocks
    are the columns side by side, C-ordered float64, row for row."""
    import numpy as np

    rng = np.random.default_rng(7)
    levels = 3
    schema = dayfiles.orderbook_schema(levels)

    def chunk(rows: int, start: int) -> pa.Table:
        ts = np.arange(start, start + rows)
        data: dict[str, object] = {"ts": ts, "recv_ts": ts}
        data["total_ask_size"] = data["total_bid_size"] = rng.random(rows)
        for name in ("ask_price", "ask_size", "bid_price", "bid_size"):
            for i in range(1, levels + 1):
                values = rng.random(rows).tolist()
                values[rows // 2] = None  # a level the book did not have
                data[f"{name}_{i}"] = values
        return pa.Table.from_pydict(data, schema=schema)

    chunked = pa.concat_tables([chunk(5, 0), chunk(20_000, 5), chunk(1, 20_005)])
    for table in (chunked, chunked.combine_chunks()):
        arrays = dayfiles.book_arrays(table)
        for name, block in (("ask_price", arrays.ask_px), ("bid_size", arrays.bid_sz)):
            expected = np.column_stack(
                [table.column(f"{name}_{i}").to_numpy(zero_copy_only=False) for i in range(1, levels + 1)]
            )
            assert block.dtype == np.float64 and block.flags.c_contiguous
            np.testing.assert_array_equal(block, expected)  # NaN where a level was missing
        assert arrays.ts.tolist() == list(range(20_006)) and arrays.levels == levels
