"""The sharded collector in process (no Redis: a stand-in for the lease manager): it writes only markets it
holds, stops at a lease's local deadline even when the event loop was held up past it, drops a
re-subscription's repeated book snapshot, and writes the taken market's hole as a gap at its first record."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from market import dayfiles
from market.collector import Collector
from market.leases import Acquired
from market.upbit.records import OrderbookRecord, TradeRecord
from tests.market.collector.factories import FakeClock, book, kst_ms, trade


class StandInLeases:
    """What the collector asks of a LeaseManager, without Redis."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.held = {"KRW-BTC": deadline, "KRW-ETH": deadline + 3600}
        self.ttl_ms, self.renew_s, self.me = 6000, 2.0, "test"

    @property
    def next_expiry(self) -> float:
        return min(self.held.values(), default=float("inf"))

    def expired(self) -> list[str]:
        gone = [m for m, t in self.held.items() if time.monotonic() >= t]
        for m in gone:
            del self.held[m]
        return gone


def _collector(tmp_path: Path, leases: Any, clock: FakeClock) -> Collector:
    return Collector(codes=["KRW-BTC", "KRW-ETH", "KRW-XRP"], ws_url="ws://127.0.0.1:9/unused",
                     data_dir=tmp_path, flush_interval=1.0, clock=clock, leases=leases)  # fmt: skip


def _rows(root: Path, market: str, kind: str = "orderbook") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for day in dayfiles.list_days(root, kind, market):
        out += dayfiles.read_day(root, kind, market, day).to_pylist()
    return out


def test_only_held_markets_are_written_and_a_passed_deadline_stops_a_market_at_once(tmp_path: Path) -> None:
    t0 = kst_ms(2026, 12, 4, 12)
    clock = FakeClock(t0)
    leases = StandInLeases(deadline=time.monotonic() + 3600)
    c = _collector(tmp_path, leases, clock)
    c.owned = {"KRW-BTC", "KRW-ETH"}
    c._lease_deadline = leases.next_expiry
    c.handle_owned_records([book("KRW-BTC", t0), book("KRW-ETH", t0), book("KRW-XRP", t0)])
    # The event loop was held up past KRW-BTC's local deadline; the frames that waited meanwhile arrive.
    leases.held["KRW-BTC"] = time.monotonic() - 0.001
    c._lease_deadline = leases.next_expiry
    c.handle_owned_records([book("KRW-BTC", t0 + 100), book("KRW-ETH", t0 + 100)])
    assert c.owned == {"KRW-ETH"}
    c.writer.close()
    assert [r["ts"] for r in _rows(tmp_path, "KRW-BTC")] == [t0]  # nothing after the deadline
    assert [r["ts"] for r in _rows(tmp_path, "KRW-ETH")] == [t0, t0 + 100]
    assert _rows(tmp_path, "KRW-XRP") == []  # never held: never written


def test_a_taken_market_gets_its_hole_as_a_gap_and_no_repeated_snapshot(tmp_path: Path) -> None:
    t0 = kst_ms(2026, 12, 4, 12)
    clock = FakeClock(t0)
    c = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)

    async def take() -> None:
        previous = {"ts": t0 - 9000, "owner": "other:1:x", "released": False}
        await c.markets_take([Acquired(market="KRW-BTC", fence=7, last=previous)])

    asyncio.run(take())
    clock.advance(500)
    first = book("KRW-BTC", t0 + 400)
    c.handle_owned_records([first])
    # A re-subscription makes the exchange send the current book again as a snapshot: stored once only.
    snapshot = OrderbookRecord.from_sides(
        "KRW-BTC", t0 + 400, t0 + 600, (1.0,), (1.0,), (0.5,), (1.0,), snapshot=True
    )
    c.handle_owned_records([snapshot, book("KRW-BTC", t0 + 700)])
    c.writer.close()
    assert [r["ts"] for r in _rows(tmp_path, "KRW-BTC")] == [t0 + 400, t0 + 700]
    (gap,) = _rows(tmp_path, "KRW-BTC", "gap")
    # The previous holder died: its last flush interval is part of the hole, which ends at our first record.
    assert (
        gap["reason"] == "takeover" and gap["ts_start"] == t0 - 9000 - 1000 and gap["ts_end"] == first.recv_ts
    )
    assert "fence 7" in gap["detail"]


def test_a_taken_markets_snapshot_trade_the_previous_holder_stored_is_not_stored_again(
    tmp_path: Path,
) -> None:
    """On subscribing, the exchange repeats its last trade as a SNAPSHOT. After a takeover that trade is one
    the previous holder already wrote (seen once in the 3-collector SIGKILL test: a trade stored twice); a
    snapshot trade from the hole (after the previous holder's last record) is new and kept."""
    t0 = kst_ms(2026, 12, 4, 12)
    clock = FakeClock(t0)
    other = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)
    other.owned = {"KRW-BTC"}
    other._lease_deadline = other.leases.next_expiry
    other.handle_owned_records([trade("KRW-BTC", t0, 1), trade("KRW-BTC", t0 + 100, 2)])
    other.writer.close()  # the previous holder's rows are on disk

    clock.now = t0 + 5000
    c = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)

    async def take() -> None:
        await c.markets_take([Acquired(market="KRW-BTC", fence=8, last={"ts": t0 + 100, "owner": "other"})])

    asyncio.run(take())
    repeated = TradeRecord("KRW-BTC", t0 + 100, t0 + 5100, 150_000_000.0, 0.01, 1, 2, snapshot=True)
    c.handle_owned_records([repeated, trade("KRW-BTC", t0 + 5200, 3)])
    c.writer.close()
    assert [r["sequential_id"] for r in _rows(tmp_path, "KRW-BTC", "trade")] == [1, 2, 3]

    clock.now = t0 + 9000
    c2 = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)
    asyncio.run(c2.markets_take([Acquired(market="KRW-BTC", fence=9, last={"ts": t0 + 5200, "owner": "c"})]))
    from_the_hole = TradeRecord("KRW-BTC", t0 + 8000, t0 + 9100, 150_000_000.0, 0.01, 1, 4, snapshot=True)
    c2.handle_owned_records([from_the_hole])
    c2.writer.close()
    assert [r["sequential_id"] for r in _rows(tmp_path, "KRW-BTC", "trade")] == [1, 2, 3, 4]


def test_a_taken_markets_snapshot_book_the_previous_holder_stored_is_not_stored_again(
    tmp_path: Path,
) -> None:
    """On subscribing, the exchange repeats the current book as a SNAPSHOT. After a handover that book is one
    the previous holder already wrote when the market was quiet since (seen once in the 3-collector test:
    a book timestamp stored twice); a snapshot book newer than the previous holder's last record is kept."""
    t0 = kst_ms(2026, 12, 4, 12)
    clock = FakeClock(t0)
    other = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)
    other.owned = {"KRW-BTC"}
    other._lease_deadline = other.leases.next_expiry
    other.handle_owned_records([book("KRW-BTC", t0), book("KRW-BTC", t0 + 100)])
    other.writer.close()  # the previous holder handed over: its rows are on disk

    clock.now = t0 + 3000
    c = _collector(tmp_path, StandInLeases(deadline=time.monotonic() + 3600), clock)
    asyncio.run(
        c.markets_take([Acquired(market="KRW-BTC", fence=8, last={"ts": t0 + 150, "owner": "other"})])
    )
    stored = _rows(tmp_path, "KRW-BTC")[-1]
    repeated = OrderbookRecord.from_sides(
        "KRW-BTC", stored["ts"], t0 + 3100, (1.0,), (1.0,), (0.5,), (1.0,), snapshot=True
    )
    newer = OrderbookRecord.from_sides(
        "KRW-BTC", stored["recv_ts"] + 500, t0 + 3200, (1.0,), (1.0,), (0.5,), (1.0,), snapshot=True
    )
    c.handle_owned_records([repeated])
    c.handle_owned_records([newer])
    c.writer.close()
    ts = [r["ts"] for r in _rows(tmp_path, "KRW-BTC")]
    assert len(ts) == len(set(ts)) == 3 and ts[-1] == newer.ts
    assert c.counts["duplicate"] == 1
