"""Paper fills priced on the collector's live book (market/livebook.py): no REST order-book call while it is
fresh, REST when it is stale or missing, the source and age reported on the order, the ledger exact."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest

from core.realtime import RELAY_HEADER, relay_token
from core.relay_asgi import RealtimeRelayFastPath
from market.fanout import MarketFanout, orderbook_payload
from market.livebook import livebook_clear, livebook_record
from tests.trading.conftest import BTC_ASKS, d
from trading import services
from trading.models import Fill, Order, PaperBalance, PaperTrade

pytestmark = pytest.mark.django_db
BUY = "/api/trading/orders/buy/"
# The live book is one tick-row above the simulator's REST book, so a fill's price says which one it used.
LIVE_ASKS = [(101_000_000, 0.001), (101_001_000, 0.002), (101_002_000, 0.01)]
LIVE_BIDS = [(100_999_000, 0.001), (100_998_000, 0.002), (100_997_000, 0.01)]


@pytest.fixture(autouse=True)
def _no_live_books(settings: Any) -> Any:
    # A minute: "fresh" must not depend on how fast a loaded machine gets from recording to the fill.
    settings.PAPER_BOOK_MAX_AGE_MS = 60_000
    livebook_clear()
    yield
    livebook_clear()


def live_payload(market: str = "KRW-BTC", asks: Any = LIVE_ASKS, bids: Any = LIVE_BIDS) -> dict[str, Any]:
    """A book exactly as the collector's fan-out publishes it."""
    units = [
        {"ask_price": a[0], "ask_size": a[1], "bid_price": b[0], "bid_size": b[1]}
        for a, b in zip(asks, bids, strict=True)
    ]
    return orderbook_payload(
        {"market": market, "timestamp": int(time.time() * 1000), "orderbook_units": units}
    )


def orderbook_calls(sim: Any) -> int:
    return int(sim.thread.call(lambda s: s.limiter.requests["orderbook"]))


def floor8(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)


def assert_ledger_exact(user: Any, start: Decimal) -> None:
    """Balances == starting KRW minus the sum of the fills, fees included; Fill rows == the paper ledger."""
    trades = list(PaperTrade.objects.filter(order__user=user))
    spent = sum((t.funds + t.fee for t in trades if t.order.side == "bid"), Decimal(0))
    got = sum((t.funds - t.fee for t in trades if t.order.side == "ask"), Decimal(0))
    krw = PaperBalance.objects.get(user=user, currency="KRW")
    assert krw.balance + krw.locked == start - spent + got
    coins = sum((t.volume if t.order.side == "bid" else -t.volume for t in trades), Decimal(0))
    assert PaperBalance.objects.get(user=user, currency="BTC").balance == coins
    fills = sorted((f.price, f.volume, f.funds, f.fee) for f in Fill.objects.filter(order__user=user))
    assert fills == sorted((t.price, t.volume, t.funds, t.fee) for t in trades)


def test_a_fresh_live_book_fills_the_order_without_a_rest_call_and_says_so(api, user, sim, settings):
    settings.PAPER_STARTING_KRW = "10000000"
    livebook_record(data=live_payload())
    before = orderbook_calls(sim)
    r = api.post(BUY, {"market": "KRW-BTC", "amount_krw": "150000"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()["order"]
    assert orderbook_calls(sim) == before  # not one /v1/orderbook request
    assert body["book_source"] == "live"
    assert 0 <= body["book_age_ms"] < 60_000
    # Level 1 of the live book: 0.001 @ 101,000,000; the rest of 150,000 KRW buys at 101,001,000.
    second = floor8(Decimal(49_000) / Decimal(101_001_000))
    assert [(Decimal(f["price"]), Decimal(f["volume"])) for f in body["fills"]] == [
        (d(101_000_000), d("0.001")),
        (d(101_001_000), second),
    ]
    order = Order.objects.get(pk=body["id"])
    assert order.book_source == "live"
    assert api.get(f"/api/trading/orders/{order.pk}/").json()["order"]["book_source"] == "live"
    assert_ledger_exact(user, d(10_000_000))


def test_a_stale_live_book_falls_back_to_rest(user, sim, settings):
    settings.PAPER_STARTING_KRW = "10000000"
    livebook_record(data=live_payload(), received_ms=int(time.time() * 1000) - 300_000)
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    assert orderbook_calls(sim) == before + 1
    assert order.book_source == "rest" and order.book_age_ms is not None
    assert [(f.price, f.volume) for f in order.fills.all()] == [(d(BTC_ASKS[0][0]), d(BTC_ASKS[0][1]))]
    assert_ledger_exact(user, d(10_000_000))


def test_no_live_book_or_the_setting_at_zero_means_rest(user, sim, settings):
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    assert order.book_source == "rest" and orderbook_calls(sim) == before + 1
    settings.PAPER_BOOK_MAX_AGE_MS = 0
    livebook_record(data=live_payload())
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    assert order.book_source == "rest" and orderbook_calls(sim) == before + 2


def test_sells_walk_the_live_bids_and_the_ledger_stays_exact(user, sim, settings):
    settings.PAPER_STARTING_KRW = "10000000"
    livebook_record(data=live_payload())
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(300_000))
    before = orderbook_calls(sim)
    held = PaperBalance.objects.get(user=user, currency="BTC").balance
    sell = services.order_place(user=user, market="KRW-BTC", side="ask", ord_type="market", volume=held)
    assert sell.state == "done" and sell.book_source == "live"
    assert [f.price for f in sell.fills.all()][0] == d(100_999_000)
    assert orderbook_calls(sim) == before
    assert_ledger_exact(user, d(10_000_000))


def test_books_relayed_to_the_web_process_are_kept_for_fills(user, sim, settings):
    """Embedded mode: the collector's books reach the web process through the relay; paper fills use them."""
    payload = live_payload()
    body = json.dumps([{"group": "market.KRW-BTC", "message": {"type": "market.orderbook", "data": payload}}])
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:  # never reached for the relay path
        raise AssertionError("relay request passed on")

    async def relay() -> None:
        app = RealtimeRelayFastPath(inner)
        messages = [{"type": "http.request", "body": body.encode(), "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "path": app.path,
            "method": "POST",
            "client": ("127.0.0.1", 5555),
            "headers": [(RELAY_HEADER.lower().encode(), relay_token().encode())],
        }
        await app(scope, receive, send)

    asyncio.run(relay())
    assert sent[0]["status"] == 204
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(50_000))
    assert order.book_source == "live" and orderbook_calls(sim) == before
    assert order.fills.get().price == d(101_000_000)


def test_with_a_shared_cache_the_collectors_books_reach_other_processes(user, sim, settings, tmp_path):
    """Redis mode: the fan-out writes each book to the shared cache, where a process that never saw the
    stream (a Celery worker) reads it. A file cache stands in for Redis here: shared, not this process's."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }

    _collect_one_book()
    livebook_clear()  # nothing in this process's memory: only the shared cache has it
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(50_000))
    assert order.book_source == "live" and orderbook_calls(sim) == before
    assert order.fills.get().price == d(101_000_000)


def _collect_one_book() -> None:
    """The collector's fan-out publishing one KRW-BTC book (the live book above) as in production."""

    async def collect() -> None:
        fanout = MarketFanout(interval=0.0, levels=15)
        await fanout.start()
        fanout.orderbook(
            {
                "market": "KRW-BTC",
                "timestamp": int(time.time() * 1000),
                "orderbook_units": [
                    {"ask_price": a[0], "ask_size": a[1], "bid_price": b[0], "bid_size": b[1]}
                    for a, b in zip(LIVE_ASKS, LIVE_BIDS, strict=True)
                ],
            }
        )
        await fanout.aclose()

    asyncio.run(collect())


def test_embedded_the_collectors_books_reach_a_process_that_never_saw_the_stream(user, sim, settings):
    """Embedded mode (per-process cache, no Redis): the fan-out writes each book to the share file; another
    process (a Celery worker, a second web worker) reads it there, and a paper fill there uses it."""
    import subprocess
    import sys

    from market.livebook import livebook_get, shared_cache_available
    from tests.live import child_env

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # embedded
    assert not shared_cache_available()
    _collect_one_book()
    code = (
        "import django; django.setup()\n"
        "from market.livebook import livebook_get\n"
        "b = livebook_get(market='KRW-BTC', max_age_ms=60000)\n"
        "print(b.where if b else None, b.asks[0][0] if b else None)\n"
    )
    env = child_env({"DJANGO_SETTINGS_MODULE": "observator.settings.test"})
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["file", "101000000"], out.stdout

    livebook_clear(shared=False)  # this process forgets the stream: like the worker, only the file has it
    book = livebook_get(market="KRW-BTC", max_age_ms=60_000)
    assert book is not None and book.where == "file"
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(50_000))
    assert order.book_source == "live" and orderbook_calls(sim) == before
    assert order.fills.get().price == d(101_000_000)


def test_embedded_a_stale_shared_book_is_not_used(user, sim, settings, monkeypatch):
    import market.livebook as livebook

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # embedded
    _collect_one_book()
    livebook_clear(shared=False)
    real_now = livebook._now_ms
    monkeypatch.setattr(livebook, "_now_ms", lambda: real_now() + 61_000)  # a minute later: stale
    assert livebook.livebook_get(market="KRW-BTC", max_age_ms=60_000) is None
    before = orderbook_calls(sim)
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(50_000))
    assert order.book_source == "rest" and orderbook_calls(sim) == before + 1
