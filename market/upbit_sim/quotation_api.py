"""The simulator's quotation REST API (no auth, JSON numbers, integer error names): markets, tickers,
order books, instruments, recent trades and candles."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from market.upbit.protocol import KRW_TICK_TABLE, ORDERBOOK_LEVELS, decimal_str, krw_tick_size

from .messages import orderbook_msg
from .responses import INVALID_PARAM, MISSING_PARAM, json_response, parse_time, quote_error
from .stats import DAY, MINUTE_UNITS

if TYPE_CHECKING:
    from .server import Simulator

MARKET_NAMES = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("엑스알피(리플)", "XRP"),
    "SOL": ("솔라나", "Solana"),
    "ADA": ("에이다", "Cardano"),
    "DOGE": ("도지코인", "Dogecoin"),
}
_CAUTIONS = (
    "PRICE_FLUCTUATIONS",
    "TRADING_VOLUME_SOARING",
    "DEPOSIT_AMOUNT_SOARING",
    "PRICE_DIFFERENCES",
    "CONCENTRATION_OF_SMALL_ACCOUNTS",
)


def _codes(request: web.Request, name: str = "markets") -> list[str] | None:
    # Comma-separated, and repeated keys too (``markets=A&markets=B``, as pyupbit sends lists).
    raws = request.query.getall(name, [])
    codes = [c.strip().upper() for raw in raws for c in raw.split(",") if c.strip()]
    return codes or None


class QuotationApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.gate = sim.gate

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/market/all", self.h_market_all)
        r.add_get("/v1/ticker", self.h_ticker)
        r.add_get("/v1/ticker/all", self.h_ticker_all)
        r.add_get("/v1/orderbook", self.h_orderbook)
        r.add_get("/v1/orderbook/instruments", self.h_instruments)
        r.add_get("/v1/orderbook/supported_levels", self.h_supported_levels)
        r.add_get("/v1/trades/ticks", self.h_trades)
        r.add_get("/v1/candles/minutes/{unit}", self.h_candles)
        r.add_get("/v1/candles/{unit:seconds|days|weeks|months|years}", self.h_candles)

    async def h_market_all(self, request: web.Request) -> web.Response:
        ok, hdr = self.gate.limit(request, "market")
        if not ok:
            return self.gate.too_many(hdr)
        details = (request.query.get("is_details") or request.query.get("isDetails") or "").lower() == "true"
        out = []
        for m in self.sim.markets:
            base = m.split("-", 1)[1]
            ko, en = MARKET_NAMES.get(base, (base, base))
            row: dict[str, Any] = {"market": m, "korean_name": ko, "english_name": en}
            if details:
                row["market_warning"] = "NONE"
                row["market_event"] = {"warning": False, "caution": dict.fromkeys(_CAUTIONS, False)}
            out.append(row)
        return json_response(out, headers=hdr)

    def _quote_codes(
        self, request: web.Request, group: str, *, require_known: bool = True
    ) -> tuple[list[str], dict[str, str]] | web.Response:
        """The prelude of the per-market quotation endpoints: rate limit, ``markets`` present, codes known."""
        ok, hdr = self.gate.limit(request, group)
        if not ok:
            return self.gate.too_many(hdr)
        codes = _codes(request)
        if codes is None:
            return quote_error(400, MISSING_PARAM, hdr)
        if require_known and not all(c in self.sim.stats for c in codes):
            return quote_error(404, "Code not found", hdr)
        return codes, hdr

    def _market(self, request: web.Request, hdr: dict[str, str]) -> str | web.Response:
        """The one ``market`` parameter of trades/candles: present (400) and known (404)."""
        market = (request.query.get("market") or "").strip().upper()
        if not market:
            return quote_error(400, MISSING_PARAM, hdr)
        if market not in self.sim.stats:
            return quote_error(404, "Code not found", hdr)
        return market

    async def h_ticker(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "ticker")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        now = self.sim.now_ms()
        stats = self.sim.stats
        return json_response([stats[c].ticker_rest(now) for c in codes if stats[c].started], headers=hdr)

    async def h_ticker_all(self, request: web.Request) -> web.Response:
        ok, hdr = self.gate.limit(request, "ticker")
        if not ok:
            return self.gate.too_many(hdr)
        quotes = _codes(request, "quote_currencies")
        if quotes is None:
            return quote_error(400, MISSING_PARAM, hdr)
        now = self.sim.now_ms()
        out = [
            st.ticker_rest(now)
            for m, st in self.sim.stats.items()
            if m.split("-", 1)[0] in quotes and st.started
        ]
        return json_response(out, headers=hdr)

    async def h_orderbook(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        level = request.query.get("level", "0").strip() or "0"
        try:
            if float(level) != 0:
                return json_response([], headers=hdr)
        except ValueError:
            return quote_error(400, INVALID_PARAM, hdr)
        try:
            count = int(request.query.get("count", ORDERBOOK_LEVELS))
        except ValueError:
            count = ORDERBOOK_LEVELS
        if not 1 <= count <= ORDERBOOK_LEVELS:
            count = ORDERBOOK_LEVELS
        out = []
        for c in codes:
            book = self.sim.books.get(c)
            if book is None:
                continue
            out.append(orderbook_msg(c, self.sim.public_book(c, book), count, None))
        return json_response(out, headers=hdr)

    async def h_instruments(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook")
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        out = []
        for c in codes:
            price = self.sim.stats[c].trade_price
            book = self.sim.books.get(c)
            if book is not None and book.bids and book.bids[0][0] > 0:
                price = book.bids[0][0]
            tick = krw_tick_size(Decimal(repr(price or 1)), KRW_TICK_TABLE)
            out.append(
                {
                    "market": c,
                    "quote_currency": c.split("-", 1)[0],
                    "tick_size": decimal_str(tick),
                    "supported_levels": ["0"],
                }
            )
        return json_response(out, headers=hdr)

    async def h_supported_levels(self, request: web.Request) -> web.Response:
        checked = self._quote_codes(request, "orderbook", require_known=False)
        if isinstance(checked, web.Response):
            return checked
        codes, hdr = checked
        rows = [{"market": c, "supported_levels": [0]} for c in codes if c in self.sim.stats]
        return json_response(rows, headers=hdr)

    async def h_trades(self, request: web.Request) -> web.Response:
        ok, hdr = self.gate.limit(request, "trade")
        if not ok:
            return self.gate.too_many(hdr)
        q = request.query
        market = self._market(request, hdr)
        if isinstance(market, web.Response):
            return market
        try:
            count = max(1, min(500, int(q.get("count", "1"))))
            cursor = int(q["cursor"]) if q.get("cursor") else None
            days_ago = int(q["days_ago"]) if q.get("days_ago") else 0
        except ValueError:
            return quote_error(400, INVALID_PARAM, hdr)
        if not 0 <= days_ago <= 7:
            return quote_error(400, INVALID_PARAM, hdr)
        now = self.sim.now_ms()
        day_start = now - now % DAY - days_ago * DAY
        to_ms = None
        if q.get("to"):
            raw = q["to"].replace(":", "")
            bad = len(raw) != 6 or not raw.isdigit()
            if bad or int(raw[:2]) > 23 or int(raw[2:4]) > 59 or int(raw[4:]) > 59:
                return quote_error(400, INVALID_PARAM, hdr)
            to_ms = day_start + (int(raw[:2]) * 3600 + int(raw[2:4]) * 60 + int(raw[4:])) * 1000
        rows = self.sim.stats[market].recent_trades(
            count=count, to_ms=to_ms, cursor=cursor, day_start=day_start if (days_ago or to_ms) else None
        )
        return json_response(rows, headers=hdr)

    async def h_candles(self, request: web.Request) -> web.Response:
        ok, hdr = self.gate.limit(request, "candles")
        if not ok:
            return self.gate.too_many(hdr)
        unit = request.match_info["unit"]
        if request.path.startswith("/v1/candles/minutes/") and (
            not unit.isdigit() or int(unit) not in MINUTE_UNITS
        ):
            return quote_error(400, "specified unit is not valid.", hdr)
        q = request.query
        market = self._market(request, hdr)
        if isinstance(market, web.Response):
            return market
        try:
            count = max(1, min(200, int(q.get("count", "1"))))
        except ValueError:
            return quote_error(400, INVALID_PARAM, hdr)
        to_ms = None
        if q.get("to"):
            to_ms = parse_time(q["to"])
            if to_ms is None:
                return quote_error(400, INVALID_PARAM, hdr)
        return json_response(self.sim.stats[market].candles(unit, count=count, to_ms=to_ms), headers=hdr)
