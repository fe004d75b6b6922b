"""Other exchanges' BTC prices in KRW and the premium, against local fake exchange and FX endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from market import selectors
from tests.market.feeds.fakes import TICKER, FakeHttp, fake_http

FX = {
    "result": "success",
    "base_code": "USD",
    "time_last_update_unix": 1732492800,
    "rates": {"USD": 1, "KRW": 1400, "JPY": 150, "EUR": 0.95},
}


@pytest.fixture
def world(settings, fake_upbit: FakeHttp) -> Iterator[FakeHttp]:  # noqa: ANN001
    """Fake bitFlyer, Binance, OKX and FX endpoints on one local server; Upbit KRW-BTC 149,000,000 and
    KRW-USDT 1,450."""
    fake_upbit.json(
        "/v1/market/all",
        [{"market": m, "korean_name": m, "english_name": m} for m in ("KRW-BTC", "KRW-USDT")],
    )

    def upbit_ticker(path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        code = query["markets"][0]
        row = {**TICKER, "market": code, "trade_price": 1450.0 if code == "KRW-USDT" else 149000000.0}
        return 200, "application/json", json.dumps([row]).encode()

    fake_upbit.routes["/v1/ticker"] = upbit_ticker
    with fake_http() as fake:
        fake.json(
            "/v1/ticker", {"product_code": "BTC_JPY", "timestamp": "2026-11-25T00:00:01.5", "ltp": 15000000.0}
        )
        fake.json("/api/v3/ticker/price", {"symbol": "BTCUSDT", "price": "100000.00000000"})
        fake.json(
            "/api/v5/market/ticker",
            {
                "code": "0",
                "msg": "",
                "data": [{"instId": "BTC-USDT", "last": "98000.5", "ts": "1764028800000"}],
            },
        )
        fake.json("/fx/latest/USD", FX)
        settings.BITFLYER_API_URL = settings.BINANCE_API_URL = settings.OKX_API_URL = fake.url
        settings.FX_SOURCE_URL = f"{fake.url}/fx/latest/USD"
        settings.FX_SOURCE_NAME = "test FX"
        settings.MARKET_USDT_SOURCE = "upbit"
        settings.EXCHANGES_CACHE_SECONDS = 0  # every call asks the sources again
        settings.FX_CACHE_SECONDS = 0
        yield fake


def _by_exchange(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["exchange"]: row for row in result["exchanges"]}


def test_prices_are_converted_to_krw_and_premium_computed_by_hand(world: FakeHttp) -> None:
    result = selectors.exchanges_btc_get()
    rows = _by_exchange(result)
    assert result["upbit"] == {
        "market": "KRW-BTC",
        "price": "149000000",
        "as_of": "2025-07-04T06:00:00.123000Z",
        "stale": False,
    }
    assert result["fx"]["usd_krw"] == "1400" and result["fx"]["source"] == "test FX"
    assert result["fx"]["as_of"] == "2024-11-25T00:00:00Z"
    # bitFlyer: 15,000,000 JPY x (1400 / 150 KRW per JPY) = 140,000,000 KRW; 149 / 140 - 1 = 6.43 %.
    assert rows["bitflyer"]["price"] == "15000000.0"
    assert rows["bitflyer"]["price_krw"] == "140000000"
    assert rows["bitflyer"]["premium_pct"] == "6.43"
    # Binance: 100,000 USDT x 1,450 KRW (Upbit KRW-USDT) = 145,000,000 KRW; 149 / 145 - 1 = 2.76 %.
    assert result["usdt"]["basis"] == "upbit:KRW-USDT" and result["usdt"]["krw"] == "1450"
    assert rows["binance"]["price_krw"] == "145000000" and rows["binance"]["premium_pct"] == "2.76"
    # OKX: 98,000.5 x 1,450 = 142,100,725 KRW; 149,000,000 / 142,100,725 - 1 = 4.855 % -> 4.86 %.
    assert rows["okx"]["price_krw"] == "142100725" and rows["okx"]["premium_pct"] == "4.86"
    assert rows["okx"]["as_of"] == "2025-11-25T00:00:00Z"
    assert not any(row["stale"] for row in rows.values())


def test_usdt_falls_back_to_the_stated_usd_assumption(world: FakeHttp, settings) -> None:  # noqa: ANN001
    settings.MARKET_USDT_SOURCE = "usd"
    result = selectors.exchanges_btc_get()
    assert result["usdt"]["basis"] == "assumed 1 USDT = 1 USD"
    # 100,000 x 1,400 = 140,000,000 KRW -> 6.43 %.
    assert _by_exchange(result)["binance"]["price_krw"] == "140000000"
    assert _by_exchange(result)["binance"]["premium_pct"] == "6.43"


def test_a_failing_source_is_stale_with_its_last_good_price_the_others_unaffected(world: FakeHttp) -> None:
    first = _by_exchange(selectors.exchanges_btc_get())
    world.routes["/api/v3/ticker/price"] = (500, "text/plain", b"boom")
    world.json("/api/v5/market/ticker", {"code": "50011", "msg": "Too Many Requests", "data": []})
    rows = _by_exchange(selectors.exchanges_btc_get())
    assert rows["binance"]["stale"] is True
    assert rows["binance"]["price"] == first["binance"]["price"]  # the last good one
    assert rows["binance"]["as_of"] == first["binance"]["as_of"]
    assert rows["okx"]["stale"] is True
    assert rows["bitflyer"]["stale"] is False and rows["bitflyer"]["premium_pct"] == "6.43"


def test_a_source_that_never_answered_is_stale_without_a_price_and_the_api_still_answers(
    world: FakeHttp,
) -> None:
    world.routes["/v1/ticker"] = (200, "application/json", b"<html>maintenance</html>")
    del world.routes["/fx/latest/USD"]  # 404: no FX, so nothing can be converted
    response = APIClient().get("/api/market/exchanges/btc/")
    assert response.status_code == 200
    body = response.json()
    rows = _by_exchange(body)
    assert rows["bitflyer"] == {**rows["bitflyer"], "price": None, "stale": True, "as_of": None}
    assert body["fx"]["stale"] is True and body["fx"]["usd_krw"] is None
    # Binance still has a price; with USDT from Upbit it is still converted and compared.
    assert rows["binance"]["price_krw"] == "145000000" and rows["binance"]["stale"] is False


def test_premium_arithmetic_is_decimal_exact() -> None:
    from market import feeds

    assert feeds.premium_pct(Decimal("100"), Decimal("100")) == Decimal("0.00")
    assert feeds.premium_pct(Decimal("99"), Decimal("100")) == Decimal("-1.00")
    assert feeds.to_krw(Decimal("0.1"), Decimal("3")) == Decimal("0")  # 0.3 KRW rounds to 0
    assert feeds.to_krw(Decimal("0.5"), Decimal("1")) == Decimal("1")  # half up


def test_an_offline_source_is_logged_once_when_it_fails_and_once_when_it_is_back(
    world: FakeHttp, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    def warnings_about(key: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name == "market.selectors" and key in r.getMessage()
        ]

    caplog.set_level(logging.DEBUG, logger="market.selectors")
    good = world.routes["/api/v3/ticker/price"]
    world.routes["/api/v3/ticker/price"] = (500, "text/plain", b"boom")
    for _ in range(5):  # offline: every poll fails (the cache TTL is 0 here, as if 30 s had passed)
        selectors.exchanges_btc_get()
    assert len(warnings_about("binance")) == 1 and "unavailable" in warnings_about("binance")[0]
    assert (
        sum("still unavailable" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) >= 4
    )
    world.routes["/api/v3/ticker/price"] = good
    for _ in range(3):
        selectors.exchanges_btc_get()
    assert len(warnings_about("binance")) == 2 and "is back" in warnings_about("binance")[1]
    world.routes["/api/v3/ticker/price"] = (500, "text/plain", b"boom")
    selectors.exchanges_btc_get()
    selectors.exchanges_btc_get()
    assert len(warnings_about("binance")) == 3  # a new outage is a new state change
    assert not warnings_about("bitflyer")  # the healthy sources say nothing
