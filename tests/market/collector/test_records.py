"""Parsing Upbit WebSocket frames (DEFAULT, SIMPLE, *_LIST) into typed immutable records."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from market.upbit.protocol import to_simple
from market.upbit.records import (
    MalformedFrame,
    OrderbookRecord,
    ServerErrorFrame,
    TickerRecord,
    TradeRecord,
    parse_frame,
)

BOOK = (
    b'{"type":"orderbook","code":"KRW-BTC","timestamp":1751608800106,"total_ask_size":2.51469375,'
    b'"total_bid_size":1.63815297,"orderbook_units":['
    b'{"ask_price":1.49001E8,"bid_price":1.49E8,"ask_size":0.0513,"bid_size":0.2201},'
    b'{"ask_price":1.49002E8,"bid_price":1.48999E8,"ask_size":0.00077720,"bid_size":0.0045}],'
    b'"level":0,"stream_type":"SNAPSHOT"}'
)
TRADE = {
    "type": "trade", "code": "KRW-BTC", "trade_price": 149000000, "trade_volume": 0.0035, "ask_bid": "BID",
    "prev_closing_price": 148000000, "change": "RISE", "change_price": 1000000, "trade_date": "2025-07-04",
    "trade_time": "06:00:00", "trade_timestamp": 1751608800000, "timestamp": 1751608800050,
    "sequential_id": 1751608800000001, "best_ask_price": 149001000, "best_ask_size": 0.0513,
    "best_bid_price": 149000000, "best_bid_size": 0.2166, "stream_type": "REALTIME",
}  # fmt: skip
TICKER = {
    "type": "ticker", "code": "KRW-BTC", "opening_price": 148000000, "high_price": 149500000,
    "low_price": 147200000, "trade_price": 149000000, "prev_closing_price": 148000000, "change": "RISE",
    "change_price": 1000000, "signed_change_price": 1000000, "change_rate": 0.0067567568,
    "signed_change_rate": 0.0067567568, "trade_volume": 0.0035, "acc_trade_volume": 572.11,
    "acc_trade_volume_24h": 1281.4, "acc_trade_price": 85000000000.5, "acc_trade_price_24h": 190000000000.1,
    "trade_date": "20250704", "trade_time": "060000", "trade_timestamp": 1751608800000, "ask_bid": "BID",
    "timestamp": 1751608800123, "stream_type": "REALTIME",
}  # fmt: skip


def test_default_orderbook_keeps_exact_tick_prices() -> None:
    (rec,) = parse_frame(BOOK, recv_ts=5)
    assert isinstance(rec, OrderbookRecord)
    assert rec.ask_price == (149001000.0, 149002000.0)  # exponent form on the wire, exact integers here
    assert rec.bid_price[0] == 149000000.0 and rec.ask_size[1] == 0.0007772
    assert rec.snapshot and rec.recv_ts == 5 and rec.levels == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.ts = 1  # type: ignore[misc]
    assert not hasattr(rec, "__dict__")  # slots: small and fast


def test_simple_and_default_parse_to_the_same_records() -> None:
    for message in (orjson.loads(BOOK), TRADE, TICKER):
        (a,) = parse_frame(orjson.dumps(message), recv_ts=1)
        (b,) = parse_frame(orjson.dumps(to_simple(message)), recv_ts=1)
        assert a == b
    (trade,) = parse_frame(orjson.dumps(TRADE), recv_ts=1)
    assert isinstance(trade, TradeRecord) and trade.side == 1 and trade.sequential_id == 1751608800000001
    (ticker,) = parse_frame(orjson.dumps(TICKER), recv_ts=1)
    assert isinstance(ticker, TickerRecord) and ticker.signed_change_rate == pytest.approx(0.0067567568)


def test_list_formats_yield_every_message() -> None:
    frame = orjson.dumps([TRADE, to_simple(TRADE) | {"sid": 2}, TICKER])
    records = parse_frame(frame, recv_ts=1)
    assert [type(r).__name__ for r in records] == ["TradeRecord", "TradeRecord", "TickerRecord"]


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1, 2]",
        b'{"foo": 1}',
        orjson.dumps({**TRADE, "ask_bid": "SIDEWAYS"}),
        orjson.dumps({**TRADE, "sequential_id": "12"}),
        orjson.dumps({k: v for k, v in TRADE.items() if k != "trade_price"}),
        BOOK.replace(b"0.0513", b'"0.0513"'),
        BOOK.replace(b'"orderbook_units":[', b'"orderbook_units":[null,'),
    ],
)
def test_malformed_frames_raise_without_echoing_the_payload(frame: bytes) -> None:
    with pytest.raises(MalformedFrame) as exc:
        parse_frame(frame, recv_ts=1)
    assert "149000000" not in str(exc.value) and "not json" not in str(exc.value)


def test_status_and_error_frames() -> None:
    assert parse_frame(b'{"status":"UP"}', recv_ts=1) == []
    with pytest.raises(ServerErrorFrame) as exc:
        parse_frame('{"error":{"name":"NO_TICKET","message":"x"}}', recv_ts=1)
    assert exc.value.name == "NO_TICKET"


def test_units_in_another_key_order_are_read_by_name() -> None:
    message = orjson.loads(BOOK)
    message["orderbook_units"] = [
        {
            "bid_size": u["bid_size"],
            "ask_size": u["ask_size"],
            "bid_price": u["bid_price"],
            "ask_price": u["ask_price"],
        }
        for u in message["orderbook_units"]
    ]
    (rec,) = parse_frame(orjson.dumps(message), recv_ts=1)
    (expected,) = parse_frame(BOOK, recv_ts=1)
    assert rec == expected and rec.ask_price[0] == 149001000.0 and rec.bid_size[0] == 0.2201
