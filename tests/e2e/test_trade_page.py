"""The /trade page as the server renders it (no browser): access, the client configuration, translations, and
nothing secret in the HTML. The browser tests (test_dashboard.py) drive the live behaviour."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from accounts.services import exchange_credential_save
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def _config(html: str) -> dict[str, Any]:
    m = re.search(r'<script id="trade-config" type="application/json">(.*?)</script>', html, re.S)
    assert m, "the page carries its client configuration"
    return json.loads(m.group(1))


@pytest.fixture
def client_in() -> tuple[Client, Any]:
    user = UserFactory()
    c = Client()
    c.force_login(user)
    return c, user


def test_trade_page_needs_login() -> None:
    response = Client().get("/trade")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_trade_page_renders_the_dashboard_with_its_configuration(client_in: tuple[Client, Any]) -> None:
    c, _ = client_in
    response = c.get("/trade")
    assert response.status_code == 200
    html = response.content.decode()
    config = _config(html)
    assert config["market"] == "KRW-BTC"
    assert config["ws"] == {"market": "/ws/market/{code}/", "user": "/ws/user/"}
    # Only endpoints this server has are handed to the page; the trading and market ones are there.
    for name in (
        "portfolio",
        "buy",
        "sell",
        "limit",
        "orders",
        "scheduled",
        "candles",
        "news",
        "exchanges",
        "auto_start",
        "auto_change",
        "auto_stop",
        "auto_decisions",
        "model_state",
        "prediction",
    ):
        assert name in config["api"], name
    assert all(url.startswith("/api/") for url in config["api"].values())
    # 0 to 5 % (the range the server accepts) in 0.01 % steps; the default is the user's kept choice.
    assert config["threshold"] == {"min": 0, "max": 5.0, "step": 0.01, "default": 0.05}
    assert config["has_keys"] is False
    assert 'data-testid="no-keys-notice"' in html and 'href="/profile"' in html
    for testid in (
        "orderbook",
        "depth-chart",
        "trades",
        "price-now",
        "decision-log",
        "buy-form",
        "scheduled-form",
        "open-orders",
        "order-history",
        "news",
        "exchanges",
    ):
        assert f'data-testid="{testid}"' in html, testid
    assert 'aria-live="polite"' in html
    assert "/static/js/trade/main.js" in html and 'type="module"' in html


@pytest.mark.parametrize(
    ("query", "market"),
    [("?market=krw-eth", "KRW-ETH"), ("?market=BTC-ETH", "KRW-BTC"), ("?market=<script>", "KRW-BTC")],
)
def test_market_from_the_address_is_validated(client_in: tuple[Client, Any], query: str, market: str) -> None:
    c, _ = client_in
    html = c.get("/trade" + query).content.decode()
    assert _config(html)["market"] == market
    assert "<script>" not in html.split('id="trade-config"')[0].split("<main")[1]


def test_stored_keys_hide_the_notice_and_never_reach_the_page(client_in: tuple[Client, Any]) -> None:
    c, user = client_in
    access, secret = "A" * 20 + "b" * 20, "S3cr3t" + "x" * 34
    exchange_credential_save(user=user, access_key=access, secret_key=secret)
    html = c.get("/trade").content.decode()
    assert _config(html)["has_keys"] is True
    assert 'data-testid="no-keys-notice"' not in html
    assert secret not in html and access not in html


def test_page_and_script_strings_follow_the_language(client_in: tuple[Client, Any]) -> None:
    c, _ = client_in
    c.post("/i18n/setlang/", {"language": "ko", "next": "/trade"})
    html = c.get("/trade").content.decode()
    config = _config(html)
    assert config["language"] == "ko"
    assert "호가" in html  # "Order book"
    assert config["strings"]["order_sent"] == "주문했습니다."
    assert config["strings"]["reconnecting"] == "{s}초 후 다시 연결…"
    c.post("/i18n/setlang/", {"language": "en", "next": "/trade"})
    assert _config(c.get("/trade").content.decode())["strings"]["order_sent"] == "Order placed."
