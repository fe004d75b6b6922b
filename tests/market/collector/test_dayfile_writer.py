"""Day-file writer: WAL appends rolled hourly into Parquet, restart resumes the same day, KST midnight
rollover, compaction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq

from market import dayfiles
from market.dayfiles import DayFileWriter, compact_day, day_dir, is_complete, read_day, segment_paths

from .factories import FakeClock, book, kst_ms, trade


def test_segments_flush_on_schedule_and_read_back(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 12))
    writer = DayFileWriter(tmp_path, markets=["KRW-BTC"], flush_interval=2.0, clock=clock)
    for i in range(10):
        writer.add_orderbook(book("KRW-BTC", clock.advance(100)))
        writer.add_trade(trade("KRW-BTC", clock.now, sid=i))
        writer.tick()
    # 1 s of data: not flushed yet; after 2 s it is, appended to the market's WAL.
    assert not segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", dt.date(2026, 3, 1)))
    clock.advance(1500)
    writer.tick()
    day = dt.date(2026, 3, 1)
    paths = segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", day))
    assert [p.name for p in paths] == ["part-00000.arrows"]
    table = read_day(tmp_path, "orderbook", "KRW-BTC", day)
    assert table.num_rows == 10 and table.schema.metadata[b"levels"] == b"30"
    arrays = dayfiles.book_arrays(table)
    assert arrays.ask_px[0, 0] == 150_001_000.0 and arrays.bid_px[0, 0] == 150_000_000.0
    trades = dayfiles.trade_arrays(read_day(tmp_path, "trade", "KRW-BTC", day))
    assert len(trades) == 10 and set(trades.side.tolist()) == {1}
    # The next flush appends to the same file: the file count does not grow with the flushes.
    writer.add_orderbook(book("KRW-BTC", clock.advance(100)))
    clock.advance(2000)
    writer.tick()
    assert segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", day)) == paths
    assert read_day(tmp_path, "orderbook", "KRW-BTC", day).num_rows == 11
    assert not list(paths[0].parent.glob(".*tmp"))  # no temp files left behind


def test_short_books_are_padded_with_nan(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 12))
    writer = DayFileWriter(tmp_path, clock=clock)
    writer.add_orderbook(book("KRW-XRP", clock.now, mid=3000.0, levels=5, tick=1.0))
    deep = book("KRW-XRP", clock.advance(10), mid=3000.0, tick=1.0)
    zero_padded = type(deep).from_sides(
        "KRW-XRP", deep.ts, deep.recv_ts, deep.ask_price, deep.ask_size,
        deep.bid_price[:29] + (0.0,), deep.bid_size[:29] + (0.0,),
    )  # fmt: skip
    writer.add_orderbook(zero_padded)
    writer.flush()
    arrays = dayfiles.book_arrays(read_day(tmp_path, "orderbook", "KRW-XRP", dt.date(2026, 3, 1)))
    assert arrays.ask_px.shape == (2, 30)
    assert arrays.ask_px[0, 4] == 3005.0 and str(arrays.ask_px[0, 5]) == "nan"
    assert str(arrays.bid_px[1, 29]) == "nan" and str(arrays.bid_sz[1, 29]) == "nan"  # wire zero padding


def test_restart_resumes_same_day_with_next_part(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 9))
    day = dt.date(2026, 3, 1)
    first = DayFileWriter(tmp_path, clock=clock)
    first.add_orderbook(book("KRW-BTC", clock.now))
    first.flush()
    first.add_orderbook(book("KRW-BTC", clock.advance(10)))
    first.close()
    # A crash mid-write left a temp file: it is never read and is removed on restart.
    directory = day_dir(tmp_path, "orderbook", "KRW-BTC", day)
    assert [p.name for p in segment_paths(directory)] == ["part-00000.arrows"]
    (directory / ".part-00002.parquet.999.tmp").write_bytes(b"PAR1 half a file")
    second = DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    assert not list(directory.glob(".*tmp"))
    second.add_orderbook(book("KRW-BTC", clock.advance(10)))
    second.close()
    # The earlier process's WAL was rolled into Parquet; the new process wrote a new WAL, never appended.
    assert [p.name for p in segment_paths(directory)] == ["part-00000.parquet", "part-00001.arrows"]
    assert read_day(tmp_path, "orderbook", "KRW-BTC", day).num_rows == 3
    assert not is_complete(directory)  # closing the process does not close the day


def test_midnight_kst_closes_the_day(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 23, 59, 58.5))
    writer = DayFileWriter(tmp_path, clock=clock, flush_interval=2.0, roll_budget=None)
    writer.add_orderbook(book("KRW-BTC", clock.now))
    writer.add_trade(trade("KRW-BTC", clock.now, sid=1))
    writer.add_orderbook(book("KRW-BTC", clock.advance(1000)))  # 23:59:59.5
    clock.advance(600)  # 00:00:00.1 next day: a tick with no data still closes the old day
    writer.tick()
    old, new = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    assert is_complete(day_dir(tmp_path, "orderbook", "KRW-BTC", old))
    assert is_complete(day_dir(tmp_path, "trade", "KRW-BTC", old))
    # The closed day holds Parquet only: its WALs were rolled before it was marked complete.
    assert [p.name for p in segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", old))] == [
        "part-00000.parquet"
    ]
    assert read_day(tmp_path, "orderbook", "KRW-BTC", old).num_rows == 2
    writer.add_orderbook(book("KRW-BTC", clock.advance(100)))
    writer.close()
    assert read_day(tmp_path, "orderbook", "KRW-BTC", new).num_rows == 1
    assert not is_complete(day_dir(tmp_path, "orderbook", "KRW-BTC", new))
    # UTC midnight (09:00 KST) is not a day boundary.
    assert dayfiles.day_of(kst_ms(2026, 3, 2, 8, 59)) == dayfiles.day_of(kst_ms(2026, 3, 2, 9, 1))


def test_rollover_inside_a_burst_splits_rows_by_day(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 23, 59, 59.9))
    writer = DayFileWriter(tmp_path, clock=clock)
    writer.add_orderbook(book("KRW-BTC", clock.now))
    writer.add_orderbook(book("KRW-BTC", clock.advance(200)))  # recv time after midnight: a new day's row
    writer.close()
    assert read_day(tmp_path, "orderbook", "KRW-BTC", dt.date(2026, 3, 1)).num_rows == 1
    assert read_day(tmp_path, "orderbook", "KRW-BTC", dt.date(2026, 3, 2)).num_rows == 1


def test_restart_after_missed_midnight_closes_old_days(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 22))
    writer = DayFileWriter(tmp_path, clock=clock)
    writer.add_trade(trade("KRW-BTC", clock.now, sid=1))
    writer.close()  # the collector was down over midnight
    clock.now = kst_ms(2026, 3, 2, 1)
    DayFileWriter(tmp_path, markets=["KRW-BTC"], clock=clock)
    directory = day_dir(tmp_path, "trade", "KRW-BTC", dt.date(2026, 3, 1))
    assert is_complete(directory)
    assert [p.name for p in directory.iterdir() if p.name.startswith("part-")] == ["part-00000.parquet"]


def test_compaction_is_one_file_with_every_row(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 23, 59))
    writer = DayFileWriter(tmp_path, clock=clock)
    for i in range(5):
        writer.add_orderbook(book("KRW-BTC", clock.advance(1000)))
        writer.add_trade(trade("KRW-BTC", clock.now, sid=i))
        writer.flush()
    writer.close()  # a restart: the next process writes a second file for the same day
    writer = DayFileWriter(tmp_path, clock=clock, roll_budget=None)
    writer.add_orderbook(book("KRW-BTC", clock.advance(1000)))
    writer.flush()
    clock.advance(60_000)
    writer.tick()
    day = dt.date(2026, 3, 1)
    assert len(segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", day))) == 2
    before = read_day(tmp_path, "orderbook", "KRW-BTC", day)
    path = compact_day(tmp_path, "orderbook", "KRW-BTC", day)
    assert path is not None and path.name == "part-00000.parquet"
    directory = day_dir(tmp_path, "orderbook", "KRW-BTC", day)
    assert segment_paths(directory) == [path] and is_complete(directory)
    after = pq.read_table(path)
    assert after.equals(before.replace_schema_metadata(after.schema.metadata))
    assert not list(directory.parent.glob("*.compacting")) and not list(directory.parent.glob("*.old"))
    assert compact_day(tmp_path, "orderbook", "KRW-BTC", dt.date(2026, 3, 2)) is None  # nothing there


def test_interrupted_compaction_is_repaired(tmp_path: Path) -> None:
    clock = FakeClock(kst_ms(2026, 3, 1, 12))
    writer = DayFileWriter(tmp_path, clock=clock, roll_budget=None)
    for i in range(3):
        writer.add_trade(trade("KRW-BTC", clock.advance(10), sid=i))
        writer.flush()
    clock.now = kst_ms(2026, 3, 2, 0, 1)
    writer.tick()
    day = dt.date(2026, 3, 1)
    directory = day_dir(tmp_path, "trade", "KRW-BTC", day)
    staged = directory.with_name(directory.name + dayfiles.COMPACT_SUFFIX)
    staged.mkdir()
    (staged / "part-00000.parquet").write_bytes(b"torn")  # crashed while staging: not complete
    dayfiles.recover_compaction(directory)
    assert not staged.exists() and read_day(tmp_path, "trade", "KRW-BTC", day).num_rows == 3
    # Crash between the two renames: originals moved to .old, the complete staged copy not yet in place.
    staged.mkdir()
    dayfiles.write_table_atomic(read_day(tmp_path, "trade", "KRW-BTC", day), staged / "part-00000.parquet")
    dayfiles.mark_complete(staged)
    directory.rename(directory.with_name(directory.name + dayfiles.OLD_SUFFIX))
    assert read_day(tmp_path, "trade", "KRW-BTC", day).num_rows == 0  # the moment of the crash
    dayfiles.recover_compaction(directory)
    assert [p.name for p in segment_paths(directory)] == ["part-00000.parquet"]
    assert read_day(tmp_path, "trade", "KRW-BTC", day).num_rows == 3
    assert not list(directory.parent.glob("*.old")) and not staged.exists()


def test_a_failed_write_keeps_the_rows_for_the_next_flush(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    clock = FakeClock(kst_ms(2026, 3, 1, 12))
    writer = DayFileWriter(tmp_path, clock=clock)
    writer.add_orderbook(book("KRW-BTC", clock.now))
    writer.add_trade(trade("KRW-BTC", clock.now, sid=1))
    real = dayfiles._wal_append
    calls = {"n": 0}

    def disk_full_once(wal, table):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 1:
            wal.fh.write(b"\xff\xff\xff\xff\x10\x00")  # half a message reached the file, then ENOSPC
            raise OSError(28, "No space left on device")
        return real(wal, table)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dayfiles, "_wal_append", disk_full_once)
        with pytest.raises(OSError):
            writer.flush()
        writer.add_orderbook(book("KRW-BTC", clock.advance(10)))
        writer.flush()
    day = dt.date(2026, 3, 1)
    assert read_day(tmp_path, "orderbook", "KRW-BTC", day).num_rows == 2  # nothing lost, nothing doubled
    assert read_day(tmp_path, "trade", "KRW-BTC", day).num_rows == 1
    # The failed WAL was cut back and retired; the retry went to a new one.
    names = [p.name for p in segment_paths(day_dir(tmp_path, "orderbook", "KRW-BTC", day))]
    assert names[-1] == "part-00001.arrows" and writer.rows_dropped == 0
