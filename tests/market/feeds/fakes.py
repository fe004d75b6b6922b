"""Local fake HTTP endpoints for feed tests: a tiny threaded server whose routes the test sets."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Route = tuple[int, str, bytes]  # status, content type, body
Handler = Callable[[str, dict[str, list[str]]], Route]


class FakeHttp:
    """``routes[path] = (status, content_type, body)`` or a callable ``(path, query) -> route``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Handler] = {}
        self.hits: list[str] = []
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                fake.hits.append(parts.path)
                route = fake.routes.get(parts.path)
                if route is None:
                    status, ctype, body = 404, "application/json", b'{"error":"not found"}'
                elif callable(route):
                    status, ctype, body = route(parts.path, parse_qs(parts.query))
                else:
                    status, ctype, body = route
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = (status, "application/json", json.dumps(body).encode())

    def raw(self, path: str, body: bytes, content_type: str = "application/xml", status: int = 200) -> None:
        self.routes[path] = (status, content_type, body)


@contextlib.contextmanager
def fake_http() -> Iterator[FakeHttp]:
    fake = FakeHttp()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=5)


# -- a minimal Upbit quotation fake (used until/where the simulator is not needed) ---------------------

BOOK = {
    "market": "KRW-BTC",
    "timestamp": 1751608800456,
    "total_ask_size": 3.0,
    "total_bid_size": 4.0,
    "orderbook_units": [
        {"ask_price": 149001000.0, "bid_price": 149000000.0, "ask_size": 1.0, "bid_size": 2.5},
        {"ask_price": 149002000.0, "bid_price": 148999000.0, "ask_size": 2.0, "bid_size": 1.5},
    ],
    "level": 0,
}
TICKER = {
    "market": "KRW-BTC",
    "trade_price": 149000000.0,
    "opening_price": 148000000.0,
    "high_price": 149500000.0,
    "low_price": 147200000.0,
    "prev_closing_price": 148000000.0,
    "change": "RISE",
    "signed_change_price": 1000000.0,
    "signed_change_rate": 0.0067567568,
    "acc_trade_volume_24h": 1281.4,
    "acc_trade_price_24h": 190000000000.1,
    "acc_trade_volume": 572.11,
    "acc_trade_price": 85000000000.5,
    "trade_timestamp": 1751608800000,
    "timestamp": 1751608800123,
}
TRADES = [  # newest first, as Upbit sends them
    {
        "market": "KRW-BTC",
        "timestamp": 1751608800002,
        "trade_price": 149000000.0,
        "trade_volume": 0.01,
        "ask_bid": "BID",
        "sequential_id": 2,
    },
    {
        "market": "KRW-BTC",
        "timestamp": 1751608800001,
        "trade_price": 148999000.0,
        "trade_volume": 0.02,
        "ask_bid": "ASK",
        "sequential_id": 1,
    },
]


def _candles(path: str, query: dict[str, list[str]]) -> Route:
    count = int(query.get("count", ["10"])[0])
    rows = []
    for i in range(min(count, 5)):  # newest first
        hour = 10 - i
        rows.append(
            {
                "market": query["market"][0],
                "candle_date_time_utc": f"2025-07-04T{hour:02d}:00:00",
                "opening_price": 1.0e8 + i,
                "high_price": 1.1e8,
                "low_price": 0.9e8,
                "trade_price": 1.05e8,
                "candle_acc_trade_volume": 1.5,
                "candle_acc_trade_price": 1.5e8,
                "timestamp": 1751608800000,
            }
        )
    return 200, "application/json", json.dumps(rows).encode()


def install_upbit(fake: FakeHttp, markets: tuple[str, ...] = ("KRW-BTC", "KRW-ETH")) -> None:
    fake.json(
        "/v1/market/all",
        [{"market": m, "korean_name": m, "english_name": m} for m in markets]
        + [{"market": "BTC-ETH", "korean_name": "x", "english_name": "x"}],
    )

    def by_market(template: Any) -> Handler:
        def handler(path: str, query: dict[str, list[str]]) -> Route:
            code = (query.get("markets") or query.get("market") or [""])[0]
            if code not in markets:
                return 404, "application/json", b'{"error":{"name":404,"message":"Code not found"}}'
            body = json.loads(json.dumps(template))
            for row in body if isinstance(body, list) else [body]:
                row["market"] = code
            return 200, "application/json", json.dumps(body if isinstance(body, list) else [body]).encode()

        return handler

    fake.routes["/v1/orderbook"] = by_market(BOOK)
    fake.routes["/v1/ticker"] = by_market(TICKER)
    fake.routes["/v1/trades/ticks"] = by_market(TRADES)
    for unit in ("minutes/1", "minutes/10", "minutes/60", "days"):
        fake.routes[f"/v1/candles/{unit}"] = _candles
