"""Outside feeds for the dashboard, pure parts: other exchanges' BTC tickers, FX conversion, premium, news.

No Django here: HTTP fetching takes an ``httpx.Client``; callers (market.selectors / market.services) add
settings and caching. Prices are ``Decimal`` end to end (they are shown next to money).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import feedparser
import httpx

KRW_QUANTUM = Decimal("1")
PCT_QUANTUM = Decimal("0.01")


class FeedError(Exception):
    """An outside source answered with something unusable (bad status, bad body, missing field)."""


def to_decimal(value: Any) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise FeedError(f"not a number: {str(value)[:40]!r}") from None
    if not d.is_finite() or d <= 0:
        raise FeedError("price must be a positive finite number")
    return d


# ------------------------------------------------------------------------------------------------------
# Other exchanges
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeSource:
    key: str
    name: str
    symbol: str
    currency: str  # quote currency of the ticker: JPY, USDT
    path: str
    params: tuple[tuple[str, str], ...]


SOURCES: tuple[ExchangeSource, ...] = (
    ExchangeSource("bitflyer", "bitFlyer", "BTC/JPY", "JPY", "/v1/ticker", (("product_code", "BTC_JPY"),)),
    ExchangeSource(
        "binance", "Binance", "BTC/USDT", "USDT", "/api/v3/ticker/price", (("symbol", "BTCUSDT"),)
    ),
    ExchangeSource("okx", "OKX", "BTC-USDT", "USDT", "/api/v5/market/ticker", (("instId", "BTC-USDT"),)),
)


@dataclass(frozen=True)
class Quote:
    price: Decimal
    as_of: dt.datetime


def _json(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise FeedError(f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise FeedError("body is not JSON") from None


def _ms_to_dt(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_exchange_ticker(key: str, body: Any, *, now: dt.datetime) -> Quote:
    """The last BTC price from one exchange's public ticker body."""
    try:
        if key == "bitflyer":
            # {"product_code":"BTC_JPY","timestamp":"2026-11-25T00:00:00.123","ltp":15000000.0,...}
            as_of = now
            ts = body.get("timestamp")
            if isinstance(ts, str):
                try:
                    parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
                    as_of = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
                except ValueError:
                    pass
            return Quote(to_decimal(body["ltp"]), as_of)
        if key == "binance":
            # {"symbol":"BTCUSDT","price":"98000.01000000"}
            if body.get("symbol") not in (None, "BTCUSDT"):
                raise FeedError("unexpected symbol")
            return Quote(to_decimal(body["price"]), now)
        if key == "okx":
            # {"code":"0","msg":"","data":[{"instId":"BTC-USDT","last":"98000.1","ts":"1732492800000",...}]}
            if str(body.get("code", "0")) != "0":
                raise FeedError(f"OKX error code {body.get('code')}")
            item = body["data"][0]
            return Quote(to_decimal(item["last"]), _ms_to_dt(item.get("ts")) or now)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise FeedError("ticker body lacks the price") from None
    raise FeedError(f"unknown exchange {key}")


def fetch_exchange_ticker(
    client: httpx.Client, source: ExchangeSource, base_url: str, *, now: dt.datetime
) -> Quote:
    try:
        response = client.get(base_url.rstrip("/") + source.path, params=dict(source.params))
    except httpx.HTTPError as exc:
        raise FeedError(f"network error ({exc.__class__.__name__})") from None
    return parse_exchange_ticker(source.key, _json(response), now=now)


@dataclass(frozen=True)
class FxRates:
    """KRW per one unit of each currency (``USD`` -> 1380.5 means 1 USD = 1,380.5 KRW)."""

    krw_per: dict[str, Decimal]
    as_of: dt.datetime
    source: str


def parse_fx(body: Any, *, source: str, now: dt.datetime) -> FxRates:
    """ExchangeRate-API style ``{"base"|"base_code": B, "rates": {CUR: units of CUR per 1 B}}``."""
    try:
        base = str(body.get("base_code") or body.get("base") or "USD").upper()
        rates = {
            str(k).upper(): to_decimal(v)
            for k, v in body["rates"].items()
            if isinstance(v, int | float | str)
        }
    except (KeyError, AttributeError, TypeError):
        raise FeedError("FX body lacks rates") from None
    rates.setdefault(base, Decimal(1))
    if "KRW" not in rates:
        raise FeedError("FX body lacks KRW")
    krw = rates["KRW"]
    krw_per = {cur: krw / per_base for cur, per_base in rates.items() if cur in ("USD", "JPY", "KRW", "EUR")}
    as_of = _unix_to_dt(body.get("time_last_update_unix")) or now
    return FxRates(krw_per=krw_per, as_of=as_of, source=source)


def _unix_to_dt(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def fetch_fx(client: httpx.Client, url: str, *, source: str, now: dt.datetime) -> FxRates:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise FeedError(f"network error ({exc.__class__.__name__})") from None
    return parse_fx(_json(response), source=source, now=now)


def to_krw(price: Decimal, krw_per_unit: Decimal) -> Decimal:
    return (price * krw_per_unit).quantize(KRW_QUANTUM, rounding=ROUND_HALF_UP)


def premium_pct(upbit_krw: Decimal, foreign_krw: Decimal) -> Decimal:
    """How much dearer BTC is on Upbit than abroad, in percent ("kimchi premium"); negative = discount."""
    return ((upbit_krw / foreign_krw - 1) * 100).quantize(PCT_QUANTUM, rounding=ROUND_HALF_UP)


# ------------------------------------------------------------------------------------------------------
# News
# ------------------------------------------------------------------------------------------------------

_WS_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^>]+>")
_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_TRACKING_PARAMS = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid")


def normalise_title(title: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form of a headline (cross-feed dedup)."""
    text = unicodedata.normalize("NFKC", html.unescape(title)).casefold()
    text = _PUNCT_RE.sub(" ", text)
    return _WS_RE.sub(" ", text).strip()


def normalise_link(link: str) -> str:
    """Scheme/host lower-cased, fragment and tracking parameters dropped, trailing slash removed."""
    try:
        parts = urlsplit(link.strip())
    except ValueError:
        return link.strip()
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith(_TRACKING_PARAMS))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, query, ""))


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _clean_text(value: str, limit: int) -> str:
    text = _WS_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", value or ""))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class NewsEntry:
    guid_key: str  # sha1 of the entry's guid, else of its normalised link
    title_key: str  # sha1 of the normalised title
    title: str
    link: str
    source: str
    feed_url: str
    summary: str
    published_at: dt.datetime


@dataclass
class ParsedFeed:
    url: str
    entries: list[NewsEntry] = field(default_factory=list)
    error: str | None = None


def _entry_time(entry: Any, now: dt.datetime) -> dt.datetime:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return dt.datetime.fromtimestamp(calendar.timegm(value), tz=dt.UTC)
            except (TypeError, ValueError, OverflowError):
                continue
    return now


def parse_feed(content: bytes, *, url: str, now: dt.datetime) -> ParsedFeed:
    """RSS or Atom bytes -> entries. A body that is not a feed at all gives ``error`` and no entries."""
    parsed = feedparser.parse(content)
    result = ParsedFeed(url=url)
    if parsed.bozo and not parsed.entries:
        result.error = f"not a feed ({type(parsed.get('bozo_exception')).__name__})"
        return result
    source = _clean_text(parsed.feed.get("title", "") or urlsplit(url).netloc, 120)
    for entry in parsed.entries:
        title = _clean_text(entry.get("title", ""), 300)
        link = (entry.get("link") or "").strip()
        if not title or not link.startswith(("http://", "https://")):
            continue
        guid = (entry.get("id") or "").strip()
        published = min(_entry_time(entry, now), now)  # a feed's clock in the future must not pin it on top
        result.entries.append(
            NewsEntry(
                guid_key=sha1(guid) if guid else sha1(normalise_link(link)),
                title_key=sha1(normalise_title(title)),
                title=title,
                link=link[:1000],
                source=source,
                feed_url=url,
                summary=_clean_text(entry.get("summary", ""), 500),
                published_at=published,
            )
        )
    return result


def fetch_feed(client: httpx.Client, url: str, *, now: dt.datetime) -> ParsedFeed:
    try:
        response = client.get(url, follow_redirects=True)
    except httpx.HTTPError as exc:
        return ParsedFeed(url=url, error=f"network error ({exc.__class__.__name__})")
    if response.status_code != 200:
        return ParsedFeed(url=url, error=f"HTTP {response.status_code}")
    return parse_feed(response.content, url=url, now=now)


def dedupe(entries: Iterable[NewsEntry]) -> list[NewsEntry]:
    """Keep the earliest of entries sharing a guid/link or a normalised title (the original, not the
    syndicated copy); returned newest first."""
    seen_guid: set[str] = set()
    seen_title: set[str] = set()
    out: list[NewsEntry] = []
    for entry in sorted(entries, key=lambda e: e.published_at):
        link_key = sha1(normalise_link(entry.link))
        if entry.guid_key in seen_guid or link_key in seen_guid or entry.title_key in seen_title:
            continue
        seen_guid.update((entry.guid_key, link_key))
        seen_title.add(entry.title_key)
        out.append(entry)
    out.reverse()
    return out
