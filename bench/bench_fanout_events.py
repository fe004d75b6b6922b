"""Cost of building one fan-out flush as typed events (market.messages Structs -> channel-layer dicts).

    .venv/bin/python bench/bench_fanout_events.py [--rounds 40] [--per-round 500]

One flush of one market, as the collector's fan-out builds it every 50 ms: a 30-level order book cut to 15
levels with cumulative depth, a batch of 20 trades and a ticker, all from the parser's records
(:mod:`market.upbit.records`). Measured: :func:`market.fanout.orderbook_event` / ``trades_event`` /
``ticker_event`` and :func:`market.messages.market_event` (what ``MarketFanout`` publishes).

Baseline in the same run: the same three payloads written as plain dict literals straight from the records
(no Struct, no validation: the least any builder can cost). Prints the median and p99 of the per-flush
time over ``--rounds`` rounds and the typed/baseline ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")

import django  # noqa: E402

django.setup()

from market import fanout  # noqa: E402
from market.messages import market_event  # noqa: E402
from market.upbit.records import OrderbookRecord, TickerRecord, TradeRecord, parse_frame  # noqa: E402


def _records() -> tuple[OrderbookRecord, list[TradeRecord], TickerRecord]:
    units = [
        {
            "ask_price": 1.49e8 + i * 1000,
            "bid_price": 1.49e8 - i * 1000,
            "ask_size": 0.5 + i,
            "bid_size": 0.25 + i,
        }
        for i in range(30)
    ]
    book = {
        "type": "orderbook",
        "code": "KRW-BTC",
        "timestamp": 1,
        "total_ask_size": 1.0,
        "total_bid_size": 1.0,
    }
    trade = {
        "type": "trade",
        "code": "KRW-BTC",
        "trade_price": 1.49e8,
        "trade_volume": 0.01,
        "ask_bid": "BID",
    }
    ticker = {
        "type": "ticker", "code": "KRW-BTC", "opening_price": 1.48e8, "high_price": 1.5e8, "low_price": 1.4e8,
        "trade_price": 1.49e8, "prev_closing_price": 1.48e8, "change": "RISE", "signed_change_price": 1e6,
        "signed_change_rate": 0.00675, "trade_volume": 0.01, "acc_trade_volume": 10.0,
        "acc_trade_volume_24h": 20.0, "acc_trade_price": 1.5e9, "acc_trade_price_24h": 3e9,
        "trade_timestamp": 1, "timestamp": 1,
    }  # fmt: skip
    rec_book = parse_frame(json.dumps({**book, "orderbook_units": units}), 0)[0]
    rec_trades = [
        parse_frame(json.dumps({**trade, "trade_timestamp": i, "timestamp": i, "sequential_id": i}), 0)[0]
        for i in range(20)
    ]
    rec_ticker = parse_frame(json.dumps(ticker), 0)[0]
    assert isinstance(rec_book, OrderbookRecord) and isinstance(rec_ticker, TickerRecord)
    return rec_book, [t for t in rec_trades if isinstance(t, TradeRecord)], rec_ticker


def typed(book: OrderbookRecord, trades: list[TradeRecord], ticker: TickerRecord) -> list[dict[str, Any]]:
    return [
        market_event("orderbook", fanout.orderbook_event(book, levels=15)),
        market_event("trade", fanout.trades_event("KRW-BTC", trades)),
        market_event("ticker", fanout.ticker_event(ticker)),
    ]


def plain(book: OrderbookRecord, trades: list[TradeRecord], ticker: TickerRecord) -> list[dict[str, Any]]:
    rows = book.rows[:15]
    asks, bids, ca, cb = [], [], 0.0, 0.0
    for ap, bp, asz, bsz in rows:
        ca += asz
        cb += bsz
        asks.append([int(ap), asz, ca])
        bids.append([int(bp), bsz, cb])
    ob = {
        "market": book.code, "ts": book.ts, "asks": asks, "bids": bids, "total_ask_size": book.total_ask_size,
        "total_bid_size": book.total_bid_size, "spread": asks[0][0] - bids[0][0],
        "mid": (asks[0][0] + bids[0][0]) / 2,
    }  # fmt: skip
    tr = {
        "market": "KRW-BTC",
        "trades": [
            {"ts": t.ts, "price": t.price, "volume": t.volume, "side": "BID" if t.side > 0 else "ASK",
             "sid": t.sequential_id}
            for t in trades
        ],
    }  # fmt: skip
    tk = {
        "market": ticker.code, "ts": ticker.trade_timestamp, "price": ticker.trade_price,
        "open": ticker.opening_price, "high": ticker.high_price, "low": ticker.low_price,
        "prev_close": ticker.prev_closing_price, "change": ticker.change,
        "change_price": ticker.signed_change_price, "change_rate": ticker.signed_change_rate,
        "volume_24h": ticker.acc_trade_volume_24h, "value_24h": ticker.acc_trade_price_24h,
        "acc_volume": ticker.acc_trade_volume, "acc_value": ticker.acc_trade_price,
    }  # fmt: skip
    return [
        {"type": "market.orderbook", "data": ob},
        {"type": "market.trade", "data": tr},
        {"type": "market.ticker", "data": tk},
    ]


def measure(
    build: Callable[..., list[dict[str, Any]]], args: tuple[Any, ...], rounds: int, n: int
) -> list[float]:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            build(*args)
        samples.append((time.perf_counter() - t) / n * 1e6)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=500)
    args = parser.parse_args()
    recs = _records()
    assert [m["type"] for m in typed(*recs)] == [m["type"] for m in plain(*recs)]
    results = {}
    for name, fn in (("baseline plain dicts", plain), ("typed events", typed)):
        s = measure(fn, recs, args.rounds, args.per_round)
        results[name] = s
        p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
        print(f"{name:22s} per flush: median {statistics.median(s):7.1f} us  p99 {p99:7.1f} us")
    ratio = statistics.median(results["typed events"]) / statistics.median(results["baseline plain dicts"])
    print(f"typed / baseline (median): {ratio:.2f}")


if __name__ == "__main__":
    main()
