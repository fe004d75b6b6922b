"""A real collector process killed with SIGKILL mid-stream: no corrupt file (a WAL's torn tail is ignored), at
most the unflushed interval lost; the restarted collector rolls the dead run's WAL into Parquet and resumes
the same day in a new file; SIGTERM flushes and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market import dayfiles
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests import live

CODES = ["KRW-BTC", "KRW-ETH"]
FLUSH_S = 1.0

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=CODES, seed=3, tick_ms=20)) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


def _start(sim: SimulatorThread, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({"DJANGO_SETTINGS_MODULE": "observator.settings.test", "OBSERVATOR_ROLE": "collector",
                "PYTHONUNBUFFERED": "1", "MARKET_PREDICTION_FEED": "false"})  # fmt: skip
    args = [live.PYTHON, "manage.py", "collect", "--markets", ",".join(CODES), "--ws-url", sim.ws_url,
            "--data-dir", str(data_dir), "--flush-interval", str(FLUSH_S),
            "--no-fanout", "--no-predictions", "--leases", "off"]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=live.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _parts(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("*/*/*/part-*.parquet")) + sorted(data_dir.glob("*/*/*/part-*.arrows"))


def _book_dir(data_dir: Path) -> Path:
    days = dayfiles.list_days(data_dir, "orderbook", "KRW-BTC")
    assert len(days) == 1, days
    return dayfiles.day_dir(data_dir, "orderbook", "KRW-BTC", days[0])


def _appends(path: Path) -> int:
    """Whole record batches in a WAL (one per flush that had rows)."""
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except (OSError, pa.ArrowInvalid):
        return 0
    n = 0
    while True:
        try:
            reader.read_next_batch()
        except (StopIteration, OSError, pa.ArrowInvalid):
            return n
        n += 1


def _newest_wal_appends(data_dir: Path, after: int = -1) -> int:
    days = dayfiles.list_days(data_dir, "orderbook", "KRW-BTC")
    if not days:
        return 0
    wals = dayfiles.wal_paths(dayfiles.day_dir(data_dir, "orderbook", "KRW-BTC", days[-1]))
    wals = [p for p in wals if (dayfiles.part_number(p) or 0) > after]
    return _appends(wals[-1]) if wals else 0


def _read_all(paths: list[Path]) -> None:
    """Every data file reads: Parquet whole, a WAL up to its last whole append."""
    for p in paths:
        if p.name.endswith(dayfiles.WAL_SUFFIX):
            assert dayfiles.read_wal(p) is not None, p
        else:
            pq.read_table(p)


def test_sigkill_then_restart_loses_at_most_one_segment(sim: SimulatorThread, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "collector.log"
    proc = _start(sim, data_dir, log)
    try:
        live.wait_until(lambda: proc.poll() is None and _newest_wal_appends(data_dir) >= 6, timeout=90,
                        message="collector appends")  # fmt: skip
        time.sleep(FLUSH_S * 0.6)  # kill somewhere inside a flush interval's collection window
        kill_ms = int(time.time() * 1000)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    # Every data file reads (a WAL up to its last whole append); nothing else looks like data.
    before = _parts(data_dir)
    _read_all(before)
    book_dir = _book_dir(data_dir)
    # One file, many flushes.
    assert [p.name for p in dayfiles.segment_paths(book_dir)] == ["part-00000.arrows"]
    assert not dayfiles.is_complete(book_dir)
    rows_before = dayfiles.read_day(data_dir, "orderbook", "KRW-BTC", dayfiles.day_of(kill_ms))
    trades_before = dayfiles.read_day(data_dir, "trade", "KRW-BTC", dayfiles.day_of(kill_ms))
    last_saved = max(rows_before.column("recv_ts").to_pylist() + trades_before.column("recv_ts").to_pylist())
    # At most the interval being collected (FLUSH_S) was lost, plus scheduling slack on a busy machine.
    assert kill_ms - last_saved <= FLUSH_S * 1000 + 2500, kill_ms - last_saved
    last_part = max(dayfiles.part_number(p) or 0 for p in dayfiles.segment_paths(book_dir))

    proc = _start(sim, data_dir, log)
    try:
        live.wait_until(
            lambda: proc.poll() is None and _newest_wal_appends(data_dir, after=last_part) >= 3,
            timeout=90, message="restarted collector appends",
        )  # fmt: skip
        stop_ms = int(time.time() * 1000)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    assert _book_dir(data_dir) == book_dir  # the same day resumed, not a new dataset
    numbers = [dayfiles.part_number(p) for p in dayfiles.segment_paths(book_dir)]
    # A new file, never appended to the old one.
    assert numbers == sorted(set(numbers)) and max(numbers) > last_part
    # The dead run's WAL was rolled into the Parquet file of its number by the restarted collector.
    assert (book_dir / "part-00000.parquet").is_file() and not (book_dir / "part-00000.arrows").exists()
    _read_all(_parts(data_dir))
    assert not list(data_dir.glob("*/*/*/.*.tmp"))  # crash leftovers were cleaned on restart
    after = dayfiles.read_day(data_dir, "orderbook", "KRW-BTC", dayfiles.day_of(stop_ms))
    assert after.num_rows > rows_before.num_rows
    kept = set(after.column("recv_ts").to_pylist())
    assert set(rows_before.column("recv_ts").to_pylist()) <= kept  # nothing saved before the kill was lost
    # SIGTERM flushed what was buffered: the data runs up to the stop.
    assert stop_ms - max(after.column("recv_ts").to_pylist()) <= 2000
    # The outage between the two runs is on record, from the last saved row to the restart.
    (gap,) = dayfiles.read_day(data_dir, "gap", "KRW-BTC", dayfiles.day_of(stop_ms)).to_pylist()
    assert gap["reason"] == "restart" and gap["ts_start"] == last_saved and gap["ts_end"] > kill_ms
