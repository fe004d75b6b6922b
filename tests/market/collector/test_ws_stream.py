"""WebSocket streaming against the simulator: records arrive, a dropped socket reconnects with a fresh
snapshot and a gap record in the day files; malformed frames are logged and skipped, never fatal."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from websockets.asyncio.server import serve

from market import batchwire, dayfiles
from market.collector import Collector, PredictionBatcher
from market.upbit.records import OrderbookRecord, TickerRecord, TradeRecord
from market.upbit.ws import TradeSequenceTracker, UpbitStreamer, request_frame, split_codes
from market.upbit_sim.server import SimConfig, SimulatorThread

from .factories import book, trade

CODES = ["KRW-BTC", "KRW-ETH"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=CODES, seed=5, tick_ms=20)) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def test_request_frame_and_pool_split() -> None:
    frame = orjson.loads(request_frame(["KRW-BTC"], fmt="SIMPLE", ticket="t"))
    assert frame == [
        {"ticket": "t"},
        {"type": "orderbook", "codes": ["KRW-BTC"]},
        {"type": "trade", "codes": ["KRW-BTC"]},
        {"type": "ticker", "codes": ["KRW-BTC"]},
        {"format": "SIMPLE"},
    ]
    groups = split_codes([f"KRW-C{i}" for i in range(250)], per_connection=100)
    assert [len(g) for g in groups] == [84, 83, 83]
    assert sum(groups, []) == [f"KRW-C{i}" for i in range(250)]


def test_streams_all_types_for_many_codes_and_reconnects_with_gap(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    async def run() -> Collector:
        collector = Collector(
            codes=CODES, ws_url=sim.ws_url, data_dir=tmp_path, flush_interval=0.3,
            streamer_options={"backoff_base": 0.05, "backoff_cap": 0.2},
        )  # fmt: skip
        task = asyncio.create_task(collector.run())
        seen: dict[str, set[str]] = {c: set() for c in CODES}
        original = collector.handle_records

        def spy(records: list[Any]) -> None:
            for r in records:
                seen[r.code].add(type(r).__name__)
            original(records)

        collector.streamer.on_records = spy
        await _until(lambda: all(len(v) == 3 for v in seen.values()))
        snapshots_before = collector.streamer.stats.frames
        async with httpx.AsyncClient() as http:
            dropped = (await http.post(sim.rest_url + "/_sim/drop_websockets")).json()
        assert dropped["dropped"] >= 1
        await _until(lambda: collector.streamer.stats.reconnects >= 1)
        await _until(lambda: collector.streamer.stats.frames > snapshots_before + 20)
        collector.stop()
        await asyncio.wait_for(task, timeout=10)
        return collector

    collector = asyncio.run(run())
    assert (
        collector.counts["orderbook"] > 0 and collector.counts["trade"] > 0 and collector.counts["ticker"] > 0
    )
    day = dayfiles.day_of(collector.clock())
    for code in CODES:
        gaps = dayfiles.read_day(tmp_path, "gap", code, day).to_pylist()
        assert [g["reason"] for g in gaps] == ["reconnect"]
        assert gaps[0]["ts_end"] >= gaps[0]["ts_start"] and "closed" in gaps[0]["detail"]
        books = dayfiles.read_day(tmp_path, "orderbook", code, day)
        assert books.num_rows > 0
        # Rows on both sides of the outage: data resumed after the fresh snapshot.
        recv = books.column("recv_ts").to_pylist()
        assert min(recv) < gaps[0]["ts_start"] and max(recv) > gaps[0]["ts_end"]


def test_malformed_frames_are_logged_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="market.upbit.ws")
    good_book = orjson.dumps({
        "type": "orderbook", "code": "KRW-BTC", "timestamp": 1, "total_ask_size": 1.0, "total_bid_size": 1.0,
        "orderbook_units": [{"ask_price": 101.0, "bid_price": 100.0, "ask_size": 1.0, "bid_size": 1.0}],
        "stream_type": "SNAPSHOT",
    })  # fmt: skip
    garbage = [
        b"\x00\xffnot json",
        b'{"type":"orderbook","code":"KRW-BTC"}',
        b'{"secret_key":"s3cr3t-value"}',
        b"[1,2,3]",
        b'{"type":"trade","code":"KRW-BTC","trade_price":"abc"}',
    ]

    async def handler(ws: Any) -> None:
        await ws.recv()  # the subscription
        for frame in garbage:
            await ws.send(frame)
        await ws.send(good_book)
        await ws.send('{"status":"UP"}')
        await asyncio.sleep(5)

    async def run() -> tuple[UpbitStreamer, list[Any]]:
        got: list[Any] = []
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            streamer = UpbitStreamer(f"ws://127.0.0.1:{port}", ["KRW-BTC"], on_records=got.extend)
            task = asyncio.create_task(streamer.run())
            await _until(lambda: len(got) >= 1, timeout=10)
            streamer.stop()
            await asyncio.wait_for(task, timeout=5)
        return streamer, got

    streamer, got = asyncio.run(run())
    assert streamer.stats.malformed == len(garbage)
    assert [type(r) for r in got] == [OrderbookRecord]
    assert "malformed" in caplog.text
    assert "s3cr3t-value" not in caplog.text  # the payload is never logged


def test_trade_sequence_tracker_reports_duplicates_and_backwards_ids() -> None:
    tracker = TradeSequenceTracker()
    assert tracker.check(trade("KRW-BTC", 1, sid=10)) == (True, None, "")
    assert tracker.check(trade("KRW-BTC", 2, sid=11)) == (True, None, "")
    keep, reason, _ = tracker.check(trade("KRW-BTC", 3, sid=11))
    assert (keep, reason) == (False, "duplicate")
    keep, reason, detail = tracker.check(trade("KRW-BTC", 4, sid=5))
    assert (keep, reason) == (True, "sequence") and "11" in detail
    snapshot_repeat = TradeRecord("KRW-BTC", 5, 5, 1.0, 1.0, 1, 10, snapshot=True)
    assert tracker.check(snapshot_repeat) == (False, None, "")  # re-sent after a resubscribe: expected
    assert tracker.check(trade("KRW-ETH", 1, sid=11)) == (True, None, "")  # per market


def test_collector_writes_sequence_gaps_fans_out_and_batches_predictions(tmp_path: Path) -> None:
    published: list[tuple[str, Any]] = []

    class FakeFanout:
        def orderbook(self, rec: Any) -> None:
            published.append(("orderbook", rec))

        def trade(self, rec: Any) -> None:
            published.append(("trade", rec))

        def ticker(self, rec: Any) -> None:
            published.append(("ticker", rec))

    batches: list[dict[str, Any]] = []
    collector = Collector(codes=["KRW-BTC"], ws_url="ws://127.0.0.1:9", data_dir=tmp_path,
                          fanout=FakeFanout(), prediction_sink=batches.append)  # fmt: skip
    now = collector.clock()
    ticker = TickerRecord("KRW-BTC", now, now, 1.0, 1.0, 1.0, 1.0, 1.0, "EVEN", 0, 0, 0, 0, 0, 0, 0, now)
    collector.handle_records([book("KRW-BTC", now), trade("KRW-BTC", now, sid=7), ticker])
    collector.handle_records([trade("KRW-BTC", now + 1, sid=7), trade("KRW-BTC", now + 2, sid=3)])
    asyncio.run(collector._send_predictions())
    collector.writer.close()
    assert [k for k, _ in published] == ["orderbook", "trade", "ticker", "trade"]
    day = dayfiles.day_of(now)
    gaps = dayfiles.read_day(tmp_path, "gap", "KRW-BTC", day).column("reason").to_pylist()
    assert gaps == ["duplicate", "sequence"]
    assert dayfiles.read_day(tmp_path, "trade", "KRW-BTC", day).column("sequential_id").to_pylist() == [7, 3]
    (body,) = batches
    batch = batchwire.decode(body)
    assert batch.codes == ("KRW-BTC",) and batch.ts.tolist() == [now]
    assert batch.levels == 15  # MARKET_PREDICTION_LEVELS of the 30 received
    ask_px, bid_px = batch.book[0, 0], batch.book[0, 2]
    assert ask_px[0] > bid_px[0] and np.all(np.diff(ask_px) > 0) and np.all(np.diff(bid_px) < 0)
    assert batch.t_side.tolist() == [1, 1] and batch.t_price.tolist() == [150_000_000.0] * 2


def test_prediction_batch_format_is_json_ready() -> None:
    batcher = PredictionBatcher(levels=15)
    rec = book("KRW-BTC", 1, levels=3)
    batcher.add_book(rec)
    payload = batcher.take()
    assert orjson.loads(orjson.dumps(payload)) == payload
    batch = batchwire.decode(payload)
    assert batch.codes == ("KRW-BTC",) and batch.levels == 3
    assert batch.book[0, 0].tolist() == list(rec.ask_price) and batch.book[0, 3].tolist() == list(
        rec.bid_size
    )
    assert batcher.take() == {}
    assert dt.date.today()  # noqa: DTZ011 - sanity: module imports fine


def test_records_feed_the_live_fanout_payloads() -> None:
    from market.fanout import orderbook_payload, ticker_payload, trades_payload

    rec = book("KRW-BTC", 1_700_000_000_000, levels=30)
    payload = orderbook_payload(rec, levels=5)
    assert payload["market"] == "KRW-BTC" and len(payload["asks"]) == 5
    assert payload["asks"][0][0] == 150_001_000 and payload["bids"][0][0] == 150_000_000
    assert trades_payload("KRW-BTC", [trade("KRW-BTC", 1, sid=1)])["trades"][0]["side"] == "BID"
    ticker = TickerRecord("KRW-BTC", 1, 1, 2.0, 1.0, 3.0, 0.5, 1.0, "RISE", 1.0, 1.0, 0, 0, 0, 0, 0, 1)
    assert ticker_payload(ticker)["price"] == 2


def test_order_book_going_back_in_time_is_a_gap(tmp_path: Path) -> None:
    collector = Collector(codes=["KRW-BTC"], ws_url="ws://127.0.0.1:9", data_dir=tmp_path)
    now = collector.clock()
    collector.handle_records([book("KRW-BTC", now), book("KRW-BTC", now - 5_000), book("KRW-BTC", now + 10)])
    collector.writer.close()
    day = dayfiles.day_of(now)
    (gap,) = dayfiles.read_day(tmp_path, "gap", "KRW-BTC", day).to_pylist()
    assert gap["reason"] == "timestamp" and (gap["ts_start"], gap["ts_end"]) == (now - 5_000, now)
    assert dayfiles.read_day(tmp_path, "orderbook", "KRW-BTC", day).num_rows == 3  # kept: data, flagged


def test_a_quiet_market_is_not_mistaken_for_a_dead_socket(tmp_path: Path) -> None:
    config = SimConfig(markets=["KRW-BTC"], seed=9, tick_ms=20, ws_status_interval=0.3)
    with SimulatorThread(config) as quiet_sim:

        async def run() -> UpbitStreamer:
            got: list[Any] = []
            streamer = UpbitStreamer(
                quiet_sim.ws_url, ["KRW-BTC"], on_records=got.extend, silence_timeout=1.5
            )
            task = asyncio.create_task(streamer.run())
            await _until(lambda: len(got) > 0)
            async with httpx.AsyncClient() as http:
                await http.post(quiet_sim.rest_url + "/_sim/pause", json={"seconds": 4})
            frames_at_pause = streamer.stats.frames
            await asyncio.sleep(3.5)  # no market data at all, longer than the silence timeout
            streamer.stop()
            await asyncio.wait_for(task, timeout=5)
            assert streamer.stats.frames > frames_at_pause  # the {"status":"UP"} keep-alives kept coming
            return streamer

        streamer = asyncio.run(run())
    assert streamer.stats.reconnects == 0 and streamer.stats.gaps == 0
