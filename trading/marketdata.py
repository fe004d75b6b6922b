"""Market data as trading needs it: the current order book, last prices, recent public trades and the
list of markets, as REST snapshots from Upbit (or the simulator) through the market app's quotation client
(``market.selectors.quotation_client``) and its cached market list, and the collector's live book
(``market.livebook``) for paper fills, REST only when it is stale; tickers are cached briefly and shared by
all users.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.errors import ServiceUnavailable
from market.livebook import livebook_get
from market.selectors import market_list, quotation_client
from market.upbit.errors import UpbitError
from trading.errors import ExchangeUnavailable, from_upbit
from trading.exchanges.base import Book

logger = logging.getLogger(__name__)
TICKER_TTL = 1.0


@dataclass(frozen=True)
class Ticker:
    market: str
    price: Decimal
    opening_price: Decimal  # Upbit's day opens at 00:00 UTC
    prev_closing_price: Decimal
    ts: int


@dataclass(frozen=True)
class PublicTrade:
    ts: int
    price: Decimal
    volume: Decimal
    ask_bid: str
    sequential_id: int


def _d(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except UpbitError as exc:
        raise from_upbit(exc) from exc
    except OSError as exc:  # network trouble below the client
        raise ExchangeUnavailable() from exc


def orderbook_get(*, market: str) -> Book:
    data = _call(quotation_client().orderbooks, [market])
    if not data:
        raise ExchangeUnavailable()
    return _book_from_wire(market, data[0])


def orderbook_for_fill(*, market: str) -> Book:
    """The book a paper fill is priced on: the collector's live book when it is at most
    settings.PAPER_BOOK_MAX_AGE_MS old (no REST call, so no quotation rate limit), else a REST snapshot.
    ``Book.source``/``age_ms`` say which."""
    max_age = int(settings.PAPER_BOOK_MAX_AGE_MS)
    live = livebook_get(market=market, max_age_ms=max_age) if max_age > 0 else None
    if live is not None:
        return Book(
            market=market,
            asks=[(_d(p), _d(s)) for p, s, *_ in live.asks if p > 0 and s > 0],
            bids=[(_d(p), _d(s)) for p, s, *_ in live.bids if p > 0 and s > 0],
            ts=live.ts,
            source="live",
            age_ms=live.age_ms(),
        )
    book = orderbook_get(market=market)
    book.age_ms = max(0, int(time.time() * 1000) - book.ts) if book.ts else None
    return book


def _book_from_wire(market: str, snap: dict[str, Any]) -> Book:
    units = snap.get("orderbook_units") or []
    asks = [(_d(u.get("ask_price")), _d(u.get("ask_size"))) for u in units]
    bids = [(_d(u.get("bid_price")), _d(u.get("bid_size"))) for u in units]
    asks = [lv for lv in asks if lv[0] > 0 and lv[1] > 0]
    bids = [lv for lv in bids if lv[0] > 0 and lv[1] > 0]
    return Book(market=market, asks=asks, bids=bids, ts=int(snap.get("timestamp") or 0))


def tickers_get(*, markets: list[str]) -> dict[str, Ticker]:
    """Last price etc. per market, cached ~1 s for everybody (one REST call serves every user)."""
    markets = sorted(set(markets))
    if not markets:
        return {}
    out: dict[str, Ticker] = {}
    missing = []
    for m in markets:
        hit = cache.get(f"trading:ticker:{m}")
        if hit is not None:
            out[m] = hit
        else:
            missing.append(m)
    if missing:
        known = market_codes()
        query = [m for m in missing if m in known]
        if query:
            for item in _call(quotation_client().tickers, query):
                t = Ticker(
                    market=item["market"],
                    price=_d(item.get("trade_price")),
                    opening_price=_d(item.get("opening_price")),
                    prev_closing_price=_d(item.get("prev_closing_price")),
                    ts=int(item.get("timestamp") or item.get("trade_timestamp") or 0),
                )
                out[t.market] = t
                cache.set(f"trading:ticker:{t.market}", t, TICKER_TTL)
    return out


def recent_trades(*, market: str, count: int = 100) -> list[PublicTrade]:
    """Recent public trades, oldest first."""
    data = _call(quotation_client().trades, market, count)
    trades = [
        PublicTrade(
            ts=int(t.get("timestamp") or 0),
            price=_d(t.get("trade_price")),
            volume=_d(t.get("trade_volume")),
            ask_bid=str(t.get("ask_bid") or ""),
            sequential_id=int(t.get("sequential_id") or 0),
        )
        for t in data
    ]
    trades.sort(key=lambda t: (t.ts, t.sequential_id))
    return trades


def market_codes() -> set[str]:
    """Codes of the KRW markets the exchange lists (``market.selectors.market_list``: one cached list for the
    dashboard and trading)."""
    try:
        return {m["market"] for m in market_list()}
    except ServiceUnavailable as exc:
        raise ExchangeUnavailable() from exc
