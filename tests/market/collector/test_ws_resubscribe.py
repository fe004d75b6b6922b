"""UpbitStreamer.set_codes (a sharded collector's markets come and go): a changed connection re-subscribes on
the same socket, kept markets see no reconnect and no gap, an emptied connection closes quietly, and more
markets than a connection takes open another."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from market.upbit.records import Record
from market.upbit.ws import UpbitStreamer
from market.upbit_sim.server import SimConfig, SimulatorThread

CODES = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    cfg = SimConfig(markets=CODES, seed=9, tick_ms=20, rate_limits={"websocket-connect": 1000})
    with SimulatorThread(cfg) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


def test_set_codes_resubscribes_without_reconnecting(sim: SimulatorThread) -> None:
    seen: list[str] = []
    gaps: list[tuple] = []

    def on_records(records: list[Record]) -> None:
        seen.extend(r.code for r in records)

    async def until(predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.05)

    async def scenario() -> UpbitStreamer:
        streamer = UpbitStreamer(
            sim.ws_url, ["KRW-BTC"], on_records=on_records, on_gap=lambda *g: gaps.append(g),
            codes_per_connection=2, open_interval=0,
        )  # fmt: skip
        task = asyncio.create_task(streamer.run())
        try:
            await until(lambda: "KRW-BTC" in seen)
            streamer.set_codes(["KRW-ETH"])
            await until(lambda: "KRW-ETH" in seen)
            await asyncio.sleep(0.3)  # frames in flight before the new request
            seen.clear()
            await until(lambda: seen.count("KRW-ETH") >= 20)
            assert set(seen) == {"KRW-ETH"}  # the old market is no longer streamed
            assert streamer.stats.connects == 1 and streamer.groups == [["KRW-ETH"]]

            streamer.set_codes(["KRW-ETH", "KRW-BTC", "KRW-XRP"])  # three codes, two a connection
            assert streamer.groups == [["KRW-ETH", "KRW-BTC"], ["KRW-XRP"]]
            seen.clear()
            await until(lambda: {"KRW-BTC", "KRW-ETH", "KRW-XRP"} <= set(seen))
            assert streamer.stats.connects == 2  # the first socket kept, one more opened

            streamer.set_codes(["KRW-XRP"])  # the first connection has nothing left: it closes
            await asyncio.sleep(0.5)
            seen.clear()
            await until(lambda: seen.count("KRW-XRP") >= 20)
            assert set(seen) == {"KRW-XRP"}
            streamer.set_codes(["KRW-XRP", "KRW-BTC"])  # and comes back for a new market
            await until(lambda: "KRW-BTC" in seen)
        finally:
            streamer.stop()
            await task
        return streamer

    streamer = asyncio.run(scenario())
    assert gaps == [] and streamer.stats.reconnects == 0  # no market had a hole
