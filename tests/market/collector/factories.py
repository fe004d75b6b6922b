"""Record builders for the collector tests."""

from __future__ import annotations

import datetime as dt

from market.dayfiles import KST
from market.upbit.records import OrderbookRecord, TradeRecord


def kst_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: float = 0.0) -> int:
    base = dt.datetime(year, month, day, hour, minute, tzinfo=KST)
    return int(base.timestamp() * 1000 + second * 1000)


def book(
    code: str, ts: int, mid: float = 150_000_000.0, levels: int = 30, tick: float = 1000.0
) -> OrderbookRecord:
    asks = tuple(mid + tick * (i + 1) for i in range(levels))
    bids = tuple(mid - tick * i for i in range(levels))
    sizes = tuple(0.1 + 0.01 * i for i in range(levels))
    return OrderbookRecord.from_sides(code, ts, ts, asks, sizes, bids, sizes)


def trade(code: str, ts: int, sid: int, price: float = 150_000_000.0, side: int = 1) -> TradeRecord:
    return TradeRecord(code, ts, ts, price, 0.01, side, sid)


class FakeClock:
    """Epoch-ms clock the tests move by hand."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now
