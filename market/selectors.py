"""Read side of market data for the dashboard: markets, ticker, order book, trades, candles, other
exchanges' BTC prices with the premium, news. Quotation data comes from Upbit (or the simulator) through
:mod:`market.upbit.client`, cached in the Django cache for a few seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.core.cache import cache, caches
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError, ServiceUnavailable, ValidationFailed
from market import feeds
from market.fanout import orderbook_payload, ticker_payload, trade_item
from market.models import NewsItem
from market.outages import source_down_note, source_up_note
from market.upbit.client import AsyncUpbitClient, UpbitClient
from market.upbit.errors import InvalidParameter, MarketNotFound, RateLimited, UpbitError
from market.upbit.protocol import is_krw_market

logger = logging.getLogger(__name__)

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------------
# Upbit quotation (markets, ticker, order book, trades, candles)
# ------------------------------------------------------------------------------------------------------


_clients = threading.local()


def quotation_client(*, max_retries: int = 3) -> UpbitClient:
    """This thread's keyless quotation client for settings.UPBIT_REST_URL with that retry budget (the one
    place quotation clients are made: the dashboard's reads and trading's share it, and each thread reuses
    its connections)."""
    key = (settings.UPBIT_REST_URL, max_retries)
    made: dict[tuple[str, int], UpbitClient] = getattr(_clients, "made", None) or {}
    client = made.get(key)
    if client is None:
        for (url, _retries), stale in made.items():
            if url != key[0]:  # the URL changed (a fallback to the simulator, tests): drop the old pool
                stale.close()
        made = {k: v for k, v in made.items() if k[0] == key[0]}
        client = made[key] = UpbitClient(base_url=key[0], timeout=5.0, max_retries=max_retries)
        _clients.made = made
    return client


def _upbit_call(fn: Callable[[UpbitClient], T]) -> T:
    """Run one quotation call (one retry: a page would rather show "unavailable" than wait), turning Upbit
    failures into application errors (never a 500)."""
    client = quotation_client(max_retries=1)
    try:
        return fn(client)
    except MarketNotFound:
        raise ValidationFailed(_("Unknown market."), code="invalid_market") from None
    except InvalidParameter as exc:
        raise ValidationFailed(
            _("Upbit rejected the request: %(name)s") % {"name": exc.name}, code="invalid"
        ) from None
    except RateLimited:
        raise ServiceUnavailable(
            _("Upbit is rate limiting us; try again in a moment."), code="rate_limited"
        ) from None
    except UpbitError as exc:
        logger.warning("upbit quotation failed: %s", exc.__class__.__name__)
        raise ServiceUnavailable(
            _("Market data is unavailable right now."), code="upstream_unavailable"
        ) from None


def _cached(key: str, ttl: float, compute: Callable[[], T]) -> T:
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, ttl)
    return value


def market_code_validate(*, code: str) -> str:
    """Upper-cased KRW market code, or a 400 naming the expected format."""
    normalised = str(code or "").strip().upper()
    if not is_krw_market(normalised):
        raise ValidationFailed(
            _("Invalid market code %(code)s; expected a KRW market such as KRW-BTC.")
            % {"code": str(code)[:20]},
            code="invalid_market",
        )
    return normalised


def market_list() -> list[dict[str, Any]]:
    """KRW markets Upbit lists: code, Korean and English names, warning flag. Cached 10 minutes."""

    def compute() -> list[dict[str, Any]]:
        rows = _upbit_call(lambda c: c.markets(is_details=True))
        out = []
        for row in rows:
            code = str(row.get("market", ""))
            if not code.startswith("KRW-"):
                continue
            event = row.get("market_event") or {}
            warning = bool(event.get("warning")) or row.get("market_warning") == "CAUTION"
            out.append(
                {
                    "market": code,
                    "korean_name": row.get("korean_name", ""),
                    "english_name": row.get("english_name", ""),
                    "warning": warning,
                }
            )
        return sorted(out, key=lambda r: r["market"])

    listed = cache.get("market:list")
    if not listed:  # an empty answer (an exchange starting up) is not kept: every order would be refused
        listed = compute()
        if listed:
            cache.set("market:list", listed, 600)
    return listed


def market_get(*, code: str) -> str:
    """A validated code of a market Upbit lists (400 for anything else)."""
    code = market_code_validate(code=code)
    try:
        known = {m["market"] for m in market_list()}
    except ServiceUnavailable:
        return code  # cannot check now; the quotation call itself will reject an unknown code
    if known and code not in known:
        raise ValidationFailed(_("Unknown market %(code)s.") % {"code": code}, code="invalid_market")
    return code


def market_is_listed(*, code: str) -> bool:
    """Whether Upbit lists ``code`` (a KRW market); ``True`` when the list cannot be fetched right now, so an
    Upbit outage never locks browsers out of the live stream."""
    if cache.get("market:list:unavailable"):
        return True
    try:
        known = {m["market"] for m in market_list()}
    except ApplicationError:
        cache.set("market:list:unavailable", 1, 10)  # do not ask a failing Upbit once per connecting browser
        return True
    return not known or code in known


def market_ticker_get(*, code: str) -> dict[str, Any]:
    code = market_get(code=code)

    def compute() -> dict[str, Any]:
        rows = _upbit_call(lambda c: c.tickers([code]))
        if not rows:
            raise ValidationFailed(_("Unknown market %(code)s.") % {"code": code}, code="invalid_market")
        return ticker_payload(rows[0])

    return _cached(f"market:ticker:{code}", 1, compute)


def market_orderbook_get(*, code: str, levels: int | None = None) -> dict[str, Any]:
    code = market_get(code=code)
    levels = levels or settings.MARKET_FANOUT_LEVELS

    def compute() -> dict[str, Any]:
        rows = _upbit_call(lambda c: c.orderbooks([code]))
        if not rows:
            raise ValidationFailed(_("Unknown market %(code)s.") % {"code": code}, code="invalid_market")
        return orderbook_payload(rows[0], levels=30)

    book = _cached(f"market:orderbook:{code}", 1, compute)
    return {**book, "asks": book["asks"][:levels], "bids": book["bids"][:levels]}


def market_trades_get(*, code: str, count: int = 50) -> dict[str, Any]:
    """Recent trades, oldest first (the same order as the live ``trade`` frames)."""
    code = market_get(code=code)
    count = max(1, min(int(count), 500))

    def compute() -> list[dict[str, Any]]:
        rows = _upbit_call(lambda c: c.trades(code, count=count))
        return [trade_item(r) for r in reversed(rows)]

    return {"market": code, "trades": _cached(f"market:trades:{code}:{count}", 1, compute)}


@dataclass(frozen=True)
class CandleInterval:
    """A chart range: which Upbit candles make it up, how many, how long they are cached."""

    unit: str
    minutes: int
    count: int
    ttl: int
    label: str


CANDLE_INTERVALS: dict[str, CandleInterval] = {
    "1m": CandleInterval("minutes", 1, 200, 2, "real time: 1-minute candles, last 200 minutes"),
    "1d": CandleInterval("minutes", 10, 144, 30, "1 day: 10-minute candles"),
    "1w": CandleInterval("minutes", 60, 168, 60, "1 week: 1-hour candles"),
    "1M": CandleInterval("days", 1, 30, 300, "1 month: daily candles"),
    "3M": CandleInterval("days", 1, 90, 300, "3 months: daily candles"),
    "6M": CandleInterval("days", 1, 180, 600, "6 months: daily candles"),
}


def _candle_time(row: dict[str, Any]) -> int:
    raw = str(row.get("candle_date_time_utc", ""))
    try:
        return int(dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC).timestamp())
    except ValueError:
        return int(row.get("timestamp", 0)) // 1000


def market_candles_get(*, code: str, interval: str) -> dict[str, Any]:
    """Candles for the price chart, oldest first; ``time`` is the candle start in epoch seconds (UTC)."""
    spec = CANDLE_INTERVALS.get(interval)
    if spec is None:
        raise ValidationFailed(
            _("Invalid interval %(interval)s; expected one of %(choices)s.")
            % {"interval": str(interval)[:10], "choices": ", ".join(CANDLE_INTERVALS)},
            code="invalid_interval",
        )
    code = market_get(code=code)

    def compute() -> list[dict[str, Any]]:
        rows = _upbit_call(lambda c: c.candles(code, spec.unit, minutes=spec.minutes, count=spec.count))
        candles = []
        for row in rows:
            candles.append(
                {
                    "time": _candle_time(row),
                    "open": row.get("opening_price"),
                    "high": row.get("high_price"),
                    "low": row.get("low_price"),
                    "close": row.get("trade_price"),
                    "volume": row.get("candle_acc_trade_volume"),
                    "value": row.get("candle_acc_trade_price"),
                }
            )
        candles.sort(key=lambda c: c["time"])
        return candles

    candles = _cached(f"market:candles:{code}:{interval}", spec.ttl, compute)
    return {"market": code, "interval": interval, "description": spec.label, "candles": candles}


async def market_rest_snapshot_get(*, market: str) -> dict[str, Any]:
    """Order book, ticker and recent trades over REST, in the live payload shapes (first WS subscribe)."""
    async with AsyncUpbitClient(base_url=settings.UPBIT_REST_URL, timeout=3.0, max_retries=0) as client:
        books, tickers, trades = await asyncio.gather(
            client.orderbooks([market]),
            client.tickers([market]),
            client.trades(market, count=50),
            return_exceptions=True,
        )
    out: dict[str, Any] = {}
    if isinstance(books, list) and books:
        out["orderbook"] = orderbook_payload(books[0], levels=settings.MARKET_FANOUT_LEVELS)
    if isinstance(tickers, list) and tickers:
        out["ticker"] = ticker_payload(tickers[0])
    if isinstance(trades, list):
        out["trades"] = [trade_item(t) for t in reversed(trades)]
    return out


# ------------------------------------------------------------------------------------------------------
# Other exchanges' BTC prices and the premium
# ------------------------------------------------------------------------------------------------------

_LAST_GOOD_TTL = 7 * 24 * 3600


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _remembered(key: str, ttl: int, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fresh value when cached younger than ``ttl``; else fetch; on failure the last good one, ``stale``.

    Cached entries: ``{"value": ..., "fetched": epoch}`` under ``key`` (kept a week, the last good value)
    and a failure marker under ``key:failed`` so a dead source is retried once per ``ttl``, not per request.
    """
    now = timezone.now().timestamp()
    entry = cache.get(key)
    if entry and now - entry["fetched"] < ttl:
        return {**entry["value"], "stale": False}
    if cache.get(f"{key}:failed") is None:
        try:
            value = fetch()
        except Exception as exc:  # noqa: BLE001 - any failure of an outside source is "stale", never a 500
            reason = exc if isinstance(exc, feeds.FeedError) else type(exc).__name__
            source_down_note(key=key, reason=reason, logger=logger)
            cache.set(f"{key}:failed", str(exc), ttl)
        else:
            cache.set(key, {"value": value, "fetched": now}, _LAST_GOOD_TTL)
            source_up_note(key=key, logger=logger)
            return {**value, "stale": False}
    if entry:
        return {**entry["value"], "stale": True}
    return {"stale": True, "as_of": None}


def fx_rates_get() -> dict[str, Any]:
    """KRW per USD and JPY from ``FX_SOURCE_URL`` (cached ``FX_CACHE_SECONDS``); stale/None on failure."""

    def fetch() -> dict[str, Any]:
        with httpx.Client(timeout=settings.FEEDS_HTTP_TIMEOUT, trust_env=False) as client:
            rates = feeds.fetch_fx(
                client, settings.FX_SOURCE_URL, source=settings.FX_SOURCE_NAME, now=timezone.now()
            )
        if "USD" not in rates.krw_per or "JPY" not in rates.krw_per:
            raise feeds.FeedError("FX source lacks USD or JPY")
        return {
            "usd_krw": str(rates.krw_per["USD"]),
            "jpy_krw": str(rates.krw_per["JPY"]),
            "as_of": _iso(rates.as_of),
            "source": rates.source,
            "url": settings.FX_SOURCE_URL,
        }

    return _remembered("feeds:fx", settings.FX_CACHE_SECONDS, fetch)


def _upbit_price(code: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        try:
            ticker = market_ticker_get(code=code)
        except ApplicationError as exc:
            raise feeds.FeedError(str(exc)) from None
        ts = ticker.get("ts")
        return {
            "price": str(feeds.to_decimal(ticker["price"])),
            "as_of": _iso(dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)) if ts else None,
        }

    return _remembered(f"feeds:upbit:{code}", settings.EXCHANGES_CACHE_SECONDS, fetch)


def _exchange_quote(source: feeds.ExchangeSource, base_url: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        with httpx.Client(timeout=settings.FEEDS_HTTP_TIMEOUT, trust_env=False) as client:
            quote = feeds.fetch_exchange_ticker(client, source, base_url, now=timezone.now())
        return {"price": str(quote.price), "as_of": _iso(quote.as_of)}

    return _remembered(f"feeds:exchange:{source.key}", settings.EXCHANGES_CACHE_SECONDS, fetch)


def exchanges_btc_get() -> dict[str, Any]:
    """Upbit's KRW-BTC and bitFlyer/Binance/OKX BTC prices in KRW with the premium; per-source stale flags.

    Conversion: JPY and USD via the FX source; USDT via Upbit's KRW-USDT price when MARKET_USDT_SOURCE is
    ``upbit`` and it answers, else at 1 USDT = 1 USD (stated in ``usdt.basis``).
    """
    # Every open dashboard asks for this; the whole answer is shared for a couple of seconds.
    return _cached("feeds:btc", min(2, settings.EXCHANGES_CACHE_SECONDS), _exchanges_btc_compute)


def _exchanges_btc_compute() -> dict[str, Any]:
    base_urls = {
        "bitflyer": settings.BITFLYER_API_URL,
        "binance": settings.BINANCE_API_URL,
        "okx": settings.OKX_API_URL,
    }
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "upbit": lambda: _upbit_price("KRW-BTC"),
        "fx": fx_rates_get,
        **{s.key: (lambda s=s: _exchange_quote(s, base_urls[s.key])) for s in feeds.SOURCES},
    }
    if settings.MARKET_USDT_SOURCE == "upbit":
        jobs["usdt"] = lambda: _upbit_price("KRW-USDT")
    # The sources are independent and each may take up to the HTTP timeout: ask them side by side.
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="feeds") as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: f.result() for name, f in futures.items()}

    upbit, fx = results["upbit"], results["fx"]
    upbit_price = Decimal(upbit["price"]) if upbit.get("price") else None
    krw_per: dict[str, Decimal] = {}
    if fx.get("usd_krw"):
        krw_per["USD"] = Decimal(fx["usd_krw"])
        krw_per["JPY"] = Decimal(fx["jpy_krw"])
    usdt = results.get("usdt") or {}
    if usdt.get("price"):
        krw_per["USDT"] = Decimal(usdt["price"])
        usdt_info = {
            "basis": "upbit:KRW-USDT",
            "krw": usdt["price"],
            "stale": usdt["stale"],
            "as_of": usdt.get("as_of"),
        }
    elif "USD" in krw_per:
        krw_per["USDT"] = krw_per["USD"]
        usdt_info = {
            "basis": "assumed 1 USDT = 1 USD",
            "krw": str(krw_per["USD"]),
            "stale": fx["stale"],
            "as_of": fx.get("as_of"),
        }
    else:
        usdt_info = {"basis": None, "krw": None, "stale": True, "as_of": None}

    exchanges = []
    for source in feeds.SOURCES:
        quote = results[source.key]
        row: dict[str, Any] = {
            "exchange": source.key,
            "name": source.name,
            "symbol": source.symbol,
            "currency": source.currency,
            "price": quote.get("price"),
            "price_krw": None,
            "premium_pct": None,
            "as_of": quote.get("as_of"),
            "stale": bool(quote["stale"]),
        }
        rate = krw_per.get(source.currency)
        if quote.get("price") and rate is not None:
            price_krw = feeds.to_krw(Decimal(quote["price"]), rate)
            row["price_krw"] = str(price_krw)
            if upbit_price is not None:
                row["premium_pct"] = str(feeds.premium_pct(upbit_price, price_krw))
        exchanges.append(row)

    return {
        "upbit": {
            "market": "KRW-BTC",
            "price": upbit.get("price"),
            "as_of": upbit.get("as_of"),
            "stale": bool(upbit["stale"]),
        },
        "fx": {
            "source": settings.FX_SOURCE_NAME,
            "url": settings.FX_SOURCE_URL,
            "usd_krw": fx.get("usd_krw"),
            "jpy_krw": fx.get("jpy_krw"),
            "as_of": fx.get("as_of"),
            "stale": bool(fx["stale"]),
        },
        "usdt": usdt_info,
        "exchanges": exchanges,
        "premium_formula": "premium_pct = (upbit_krw / exchange_krw - 1) * 100",
        "generated_at": _iso(timezone.now()),
    }


# ------------------------------------------------------------------------------------------------------
# News
# ------------------------------------------------------------------------------------------------------


def news_list(*, limit: int = 30) -> list[dict[str, Any]]:
    """Latest news, newest first, cached until the next refresh writes new items."""

    limit = max(1, min(int(limit), 100))

    def compute() -> list[dict[str, Any]]:
        rows = NewsItem.objects.order_by("-published_at", "-id").values(
            "title", "link", "source", "summary", "published_at"
        )[:limit]
        return [{**r, "published_at": _iso(r["published_at"])} for r in rows]

    return _cached(f"news:list:{limit}:{caches['shared'].get('news:version', 0)}", 60, compute)
