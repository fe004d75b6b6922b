"""Replay source: the real 2018 KRW-ADA sample and our own day files, rebased, at speed, looping."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from market import dayfiles
from market.dayfiles import TRADE_SCHEMA, day_dir, orderbook_schema
from market.upbit_sim.replay import ReplaySource
from market.upbit_sim.server import SimConfig, SimulatorThread

SAMPLE_DIR = dayfiles.SAMPLE_DIR
needs_sample = pytest.mark.skipif(not SAMPLE_DIR.is_dir(), reason=f"real sample not at {SAMPLE_DIR}")
START = 1_800_000_000_000


@needs_sample
def test_real_ada_sample_replays_with_rebased_time_and_real_levels() -> None:
    src = ReplaySource.from_path(SAMPLE_DIR, start_ms=START)
    assert src.markets == ["KRW-ADA"]
    u = src.advance(START + 60_000)["KRW-ADA"]
    book = u.book
    assert book is not None and START <= book.ts <= START + 60_000
    assert len(book.asks) == 7  # the sample has 7 levels
    (ap, asz), (bp, bsz) = book.asks[0], book.bids[0]
    assert 420 <= bp < ap <= 440 and asz > 0 and bsz > 0  # real KRW-ADA prices, 1 KRW tick
    assert ap - bp >= 1 and float(ap).is_integer()
    assert u.trades and all(START <= t.ts <= START + 60_000 for t in u.trades)
    assert {t.ask_bid for t in u.trades} <= {"BID", "ASK"}


@needs_sample
def test_real_sample_loops_with_time_and_ids_still_increasing() -> None:
    src = ReplaySource.from_path(SAMPLE_DIR, start_ms=START, record_all=True)
    cur = src._cursors["KRW-ADA"]
    span = cur.duration
    u1 = src.advance(START + span - 2_000)["KRW-ADA"]
    u2 = src.advance(START + span + 120_000)["KRW-ADA"]  # across the loop boundary
    ts = [b.ts for b in u1.books + u2.books]
    assert ts == sorted(ts)
    ids = [t.sequential_id for t in u1.trades + u2.trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert u2.books[-1].ts > START + span
    # Looped data is the same market data again (first book of the loop equals the very first book).
    first = ReplaySource.from_path(SAMPLE_DIR, start_ms=START).advance(START)["KRW-ADA"].book
    looped = [b for b in u2.books if b.ts >= START + span][0]
    assert looped.asks == first.asks and looped.bids == first.bids
    assert len(u1.books) > 3000  # record_all keeps every snapshot (unpaced streaming)


@needs_sample
def test_simulator_serves_the_replayed_sample_over_rest() -> None:
    cfg = SimConfig(markets=["KRW-ADA"], source="replay", replay_path=str(SAMPLE_DIR), speed=60, tick_ms=20)
    with SimulatorThread(cfg) as sim:
        sim.call(lambda s: s.step(s.now_ms() + 5_000))
        r = requests.get(f"{sim.rest_url}/v1/orderbook", params={"markets": "KRW-ADA"}, timeout=5)
        assert r.status_code == 200
        units = r.json()[0]["orderbook_units"]
        assert len(units) == 30
        assert units[0]["ask_price"] > units[0]["bid_price"] > 400
        assert units[7] == {"ask_price": 0.0, "bid_price": 0.0, "ask_size": 0.0, "bid_size": 0.0}  # padded
        # speed 60: a minute of source time per wall second
        t0, w0 = sim.call(lambda s: (s.now_ms(), time.time()))
        time.sleep(0.3)
        t1, w1 = sim.call(lambda s: (s.now_ms(), time.time()))
        assert (t1 - t0) / ((w1 - w0) * 1000) == pytest.approx(60, rel=0.05)


def _write_day(root: Path, market: str, day: dt.date, t0: int) -> None:
    n, levels = 50, 3
    cols: dict[str, np.ndarray] = {"ts": t0 + np.arange(n) * 100, "recv_ts": t0 + np.arange(n) * 100 + 5}
    cols["total_ask_size"] = np.full(n, 3.0)
    cols["total_bid_size"] = np.full(n, 3.0)
    base = 150_000_000 + np.arange(n) * 1000
    for i in range(1, levels + 1):
        cols[f"ask_price_{i}"] = (base + i * 1000).astype(float)
        cols[f"ask_size_{i}"] = np.full(n, float(i))
    for i in range(1, levels + 1):
        cols[f"bid_price_{i}"] = (base - (i - 1) * 1000).astype(float)
        cols[f"bid_size_{i}"] = np.full(n, float(i))
    d = day_dir(root, "orderbook", market, day)
    d.mkdir(parents=True)
    pq.write_table(pa.table(cols, schema=orderbook_schema(levels)), d / "part-00000.parquet")
    trades = pa.table(
        {
            "ts": t0 + np.arange(10) * 500 + 50,
            "recv_ts": t0 + np.arange(10) * 500 + 60,
            "price": np.full(10, 150_001_000.0),
            "volume": np.full(10, 0.01),
            "side": np.array([1, -1] * 5, dtype=np.int8),
            "sequential_id": np.arange(10, dtype=np.int64),
        },
        schema=TRADE_SCHEMA,
    )
    t = day_dir(root, "trade", market, day)
    t.mkdir(parents=True)
    pq.write_table(trades, t / "part-00000.parquet")


def test_our_day_files_replay_in_order_without_rebasing(tmp_path: Path) -> None:
    t0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    _write_day(tmp_path, "KRW-BTC", dt.date(2026, 1, 1), t0)
    src = ReplaySource.from_path(tmp_path, loop=False)
    assert src.markets == ["KRW-BTC"] and src.start_ms() == t0
    u = src.advance(t0 + 2_000)["KRW-BTC"]
    assert u.book is not None and u.book.ts == t0 + 2_000
    assert u.book.asks[0] == (150_000_000.0 + 20 * 1000 + 1000, 1.0)
    assert [t.ask_bid for t in u.trades] == ["BID", "ASK", "BID", "ASK"]
    rest = src.advance(t0 + 10_000_000)["KRW-BTC"]
    assert rest.book is not None and rest.book.ts == t0 + 49 * 100
    assert src.advance(t0 + 20_000_000) == {}  # loop=False: the day is over
