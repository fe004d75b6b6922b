"""market.fanout: browser payloads from records and Upbit dicts; per-market coalescing of bursts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from market.fanout import MarketFanout, kind_of, orderbook_payload, ticker_payload, trade_item
from market.upbit.records import parse_frame

DEFAULT_BOOK = {
    "type": "orderbook",
    "code": "KRW-BTC",
    "timestamp": 1751608800106,
    "total_ask_size": 3.5,
    "total_bid_size": 1.75,
    "level": 0,
    "stream_type": "REALTIME",
    "orderbook_units": [
        {"ask_price": 1.49001e8, "bid_price": 1.49e8, "ask_size": 0.5, "bid_size": 0.25},
        {"ask_price": 1.49002e8, "bid_price": 1.48999e8, "ask_size": 1.0, "bid_size": 0.5},
        {"ask_price": 1.49003e8, "bid_price": 1.48998e8, "ask_size": 2.0, "bid_size": 1.0},
        {"ask_price": 0, "bid_price": 0, "ask_size": 0, "bid_size": 0},  # Upbit's padding of thin books
    ],
}


def _book(ts: int, market: str = "KRW-BTC", bid: float = 1.49e8) -> dict[str, Any]:
    return {
        "type": "orderbook",
        "code": market,
        "timestamp": ts,
        "total_ask_size": 1.0,
        "total_bid_size": 1.0,
        "orderbook_units": [{"ask_price": bid + 1000, "bid_price": bid, "ask_size": 1.0, "bid_size": 1.0}],
    }


def test_orderbook_payload_has_cumulative_depth_per_side_and_drops_padding() -> None:
    payload = orderbook_payload(DEFAULT_BOOK, levels=15)
    assert payload["market"] == "KRW-BTC"
    assert payload["asks"] == [[149001000, 0.5, 0.5], [149002000, 1.0, 1.5], [149003000, 2.0, 3.5]]
    assert payload["bids"] == [[149000000, 0.25, 0.25], [148999000, 0.5, 0.75], [148998000, 1.0, 1.75]]
    assert payload["spread"] == 1000
    assert payload["mid"] == 149000500
    assert payload["ts"] == 1751608800106


def test_orderbook_payload_limits_levels_and_reads_records_and_simple_frames() -> None:
    assert len(orderbook_payload(DEFAULT_BOOK, levels=2)["asks"]) == 2
    record = parse_frame(__import__("json").dumps(DEFAULT_BOOK), 0)[0]
    assert orderbook_payload(record, levels=15) == orderbook_payload(DEFAULT_BOOK, levels=15)
    simple = {
        "ty": "orderbook",
        "cd": "KRW-BTC",
        "tms": 1751608800106,
        "tas": 3.5,
        "tbs": 1.75,
        "obu": [{"ap": 149001000, "bp": 149000000, "as": 0.5, "bs": 0.25}],
    }
    assert orderbook_payload(simple)["asks"] == [[149001000, 0.5, 0.5]]


def test_trade_and_ticker_payloads_from_records_match_dicts() -> None:
    trade = {
        "type": "trade",
        "code": "KRW-BTC",
        "trade_price": 149000000,
        "trade_volume": 0.0035,
        "ask_bid": "ASK",
        "trade_timestamp": 1751608800000,
        "timestamp": 1751608800050,
        "sequential_id": 17,
        "prev_closing_price": 148000000,
    }
    rec = parse_frame(__import__("json").dumps(trade), 0)[0]
    assert (
        trade_item(trade)
        == trade_item(rec)
        == {"ts": 1751608800000, "price": 149000000, "volume": 0.0035, "side": "ASK", "sid": 17}
    )
    ticker = {
        "type": "ticker",
        "code": "KRW-BTC",
        "opening_price": 148000000,
        "high_price": 149500000,
        "low_price": 147200000,
        "trade_price": 149000000,
        "prev_closing_price": 148000000,
        "change": "RISE",
        "signed_change_price": 1000000,
        "signed_change_rate": 0.0067567568,
        "trade_volume": 0.0035,
        "acc_trade_volume": 572.11,
        "acc_trade_volume_24h": 1281.4,
        "acc_trade_price": 85000000000.5,
        "acc_trade_price_24h": 190000000000.1,
        "trade_timestamp": 1751608800000,
        "timestamp": 1751608800123,
    }
    from_dict = ticker_payload(ticker)
    assert from_dict["price"] == 149000000 and from_dict["change"] == "RISE"
    assert from_dict["change_price"] == 1000000 and from_dict["change_rate"] == pytest.approx(0.0067567568)
    assert from_dict["high"] == 149500000 and from_dict["low"] == 147200000
    assert from_dict["volume_24h"] == 1281.4
    from_record = ticker_payload(parse_frame(__import__("json").dumps(ticker), 0)[0])
    assert {k: from_record[k] for k in ("price", "change", "change_rate", "high", "low", "volume_24h")} == {
        k: from_dict[k] for k in ("price", "change", "change_rate", "high", "low", "volume_24h")
    }
    assert kind_of(rec) == "trade" and kind_of(ticker) == "ticker" and kind_of(DEFAULT_BOOK) == "orderbook"


class _Recorder:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, dict[str, Any]]]] = []

    async def __call__(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        self.batches.append(messages)

    def events(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(g, m) for batch in self.batches for g, m in batch if m["type"] == f"market.{kind}"]


def test_burst_of_100_books_publishes_few_and_the_last_is_the_newest() -> None:
    recorder = _Recorder()

    async def scenario() -> None:
        async with MarketFanout(interval=0.05, levels=5, publisher=recorder) as fanout:
            for i in range(100):
                fanout.orderbook(_book(1_000 + i, bid=1.0e8 + i * 1000))
                if i % 10 == 9:
                    await asyncio.sleep(0.01)  # the burst spans ~100 ms: about two windows
            await asyncio.sleep(0.12)

    asyncio.run(scenario())
    books = recorder.events("orderbook")
    assert 1 <= len(books) <= 5
    group, last = books[-1]
    assert group == "market.KRW-BTC"
    assert last["data"]["ts"] == 1_099
    assert last["data"]["bids"][0][0] == int(1.0e8 + 99 * 1000)


def test_trades_are_batched_not_dropped_and_markets_are_independent() -> None:
    recorder = _Recorder()

    async def scenario() -> None:
        async with MarketFanout(interval=0.05, levels=5, publisher=recorder) as fanout:
            for i in range(30):
                fanout.trade(
                    {
                        "type": "trade",
                        "code": "KRW-BTC",
                        "trade_price": 100 + i,
                        "trade_volume": 1,
                        "ask_bid": "BID",
                        "trade_timestamp": 10 + i,
                        "sequential_id": i,
                    }
                )
                fanout.orderbook(_book(i, market="KRW-ETH"))
            fanout.submit({"type": "nonsense"})  # ignored, never raises

    asyncio.run(scenario())
    trades = [t for _, m in recorder.events("trade") for t in m["data"]["trades"]]
    assert [t["sid"] for t in trades] == list(range(30))
    eth = [m for g, m in recorder.events("orderbook") if g == "market.KRW-ETH"]
    assert eth and eth[-1]["data"]["ts"] == 29


def test_a_quiet_market_publishes_at_once_leading_edge() -> None:
    recorder = _Recorder()
    seen: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def publisher(messages: list[tuple[str, dict[str, Any]]]) -> None:
            seen.append(loop.time())
            await recorder(messages)

        async with MarketFanout(interval=0.5, levels=5, publisher=publisher) as fanout:
            await asyncio.sleep(0.01)
            start = loop.time()
            fanout.orderbook(_book(1))
            await asyncio.sleep(0.05)
            assert seen and seen[0] - start < 0.03

    asyncio.run(scenario())


def test_a_malformed_update_is_skipped_and_the_stream_goes_on() -> None:
    recorder = _Recorder()

    async def scenario() -> None:
        async with MarketFanout(interval=0.01, levels=5, publisher=recorder) as fanout:
            fanout.orderbook({"type": "orderbook", "code": "KRW-BTC", "timestamp": 1})  # no levels
            await asyncio.sleep(0.05)
            fanout.orderbook(_book(2))
            await asyncio.sleep(0.05)
            assert fanout.dropped_invalid == 1

    asyncio.run(scenario())
    assert [m["data"]["ts"] for _, m in recorder.events("orderbook")] == [2]


def test_submit_from_another_thread_hops_onto_the_fanout_loop() -> None:
    import threading

    recorder = _Recorder()

    async def scenario() -> None:
        async with MarketFanout(interval=0.01, levels=5, publisher=recorder) as fanout:
            worker = threading.Thread(target=lambda: [fanout.orderbook(_book(i)) for i in range(50)])
            worker.start()
            await asyncio.to_thread(worker.join, 5)
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert recorder.events("orderbook")[-1][1]["data"]["ts"] == 49


def test_kind_comes_from_the_record_type_or_upbit_fields_never_from_a_class_name() -> None:
    class TradeLookalike:  # neither a record of market.upbit.records nor an Upbit dict
        kind = "trade"
        code = "KRW-BTC"

    assert kind_of(TradeLookalike()) is None
    assert kind_of({"ty": "trade", "cd": "KRW-BTC"}) == "trade"  # SIMPLE format
    # REST answers have no type; their Upbit fields tell.
    assert kind_of({"market": "KRW-BTC", "ask_bid": "BID", "sequential_id": 1}) == "trade"


def test_events_carry_exactly_the_documented_fields() -> None:
    import msgspec

    from market.messages import OrderbookEvent, TickerEvent, TradeItem

    fields = {
        OrderbookEvent: orderbook_payload(DEFAULT_BOOK),
        TradeItem: trade_item({"type": "trade", "code": "KRW-BTC", "trade_price": 1, "ask_bid": "BID"}),
        TickerEvent: ticker_payload({"type": "ticker", "code": "KRW-BTC", "trade_price": 2}),
    }
    for struct, payload in fields.items():
        assert set(payload) == set(struct.__struct_fields__), struct
        assert msgspec.convert(payload, struct) is not None
    # REST /trades/ticks names the trade time "timestamp" (the WebSocket "trade_timestamp").
    rest_tick = {"market": "KRW-BTC", "timestamp": 5, "trade_price": 1, "trade_volume": 2, "ask_bid": "ASK"}
    assert trade_item(rest_tick)["ts"] == 5 and trade_item(rest_tick)["side"] == "ASK"
