"""Trading REST API: every validation rule is a clear 4xx with nothing sent; every object is scoped to its
owner; the mode is in every response; switching to live needs keys and confirmation; the e-mail report
arrives over real SMTP; schemathesis finds no 5xx."""

from __future__ import annotations

import datetime as dt
import email
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.accounts.factories import ExchangeCredentialFactory
from tests.trading.conftest import d
from trading import services
from trading.models import Order, PaperOrder, ScheduledOrder, TradingProfile

pytestmark = pytest.mark.django_db

TRADING_OPERATIONS = [
    "trading_mode_get",
    "trading_mode_set",
    "trading_risk_limits_get",
    "trading_risk_limits_set",
    "trading_balances",
    "trading_portfolio",
    "trading_report_send",
    "trading_buy",
    "trading_sell",
    "trading_limit",
    "trading_order_cancel",
    "trading_orders_list",
    "trading_order_detail",
    "trading_scheduled_list",
    "trading_scheduled_create",
    "trading_scheduled_detail",
    "trading_scheduled_delete",
    "trading_scheduled_cancel",
    "trading_paper_reset",
]
BUY = "/api/trading/orders/buy/"
SELL = "/api/trading/orders/sell/"
LIMIT = "/api/trading/orders/limit/"


def raw(api: APIClient, url: str, body: str) -> Any:
    return api.generic("POST", url, body, content_type="application/json")


@pytest.mark.parametrize(
    ("url", "body", "code"),
    [
        (BUY, '{"market": "KRW-BTC", "amount_krw": "-10000"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "0"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "abc"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "NaN"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "Infinity"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": NaN}', "parse_error"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": 1e400}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": true}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "10000.123456789"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": 4999}', "under_min_total"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "20000000"}', "insufficient_funds"),
        (BUY, '{"market": "KRW-NOPE", "amount_krw": "10000"}', "market_not_found"),
        (BUY, '{"market": "BTC-ETH", "amount_krw": "10000"}', "market_not_found"),
        (BUY, '{"amount_krw": "10000"}', "invalid"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "10000", "client_order_id": "bad key!"}', "invalid_key"),
        (BUY, '{"market": "KRW-BTC", "amount_krw": "10000", "client_order_id": "sched-1"}', "invalid_key"),
        (BUY, "not json", "parse_error"),
        (SELL, '{"market": "KRW-BTC", "volume": "0.000000001"}', "invalid"),
        (SELL, '{"market": "KRW-BTC", "volume": 0.123456789}', "invalid"),
        (SELL, '{"market": "KRW-BTC", "volume": "0.01"}', "insufficient_funds"),
        (SELL, '{"market": "KRW-BTC", "volume": "0.00001"}', "under_min_total"),
        (
            LIMIT,
            '{"market": "KRW-BTC", "side": "bid", "price": "100000500", "volume": "0.001"}',
            "invalid_price_unit",
        ),
        (
            LIMIT,
            '{"market": "KRW-BTC", "side": "bid", "price": "100000000", "volume": "0.00001"}',
            "under_min_total",
        ),
        (LIMIT, '{"market": "KRW-BTC", "side": "buy", "price": "100000000", "volume": "0.001"}', "invalid"),
        (
            LIMIT,
            '{"market": "KRW-BTC", "side": "ask", "price": "100000000", "volume": "0.001"}',
            "insufficient_funds",
        ),
    ],
)
def test_every_validation_rule_is_a_clear_400_and_nothing_is_sent(api, sim, url, body, code):
    r = raw(api, url, body)
    assert r.status_code == 400, r.content
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    assert r.json()["mode"] == "paper" and r["X-Trading-Mode"] == "paper"
    assert Order.objects.count() == 0 and PaperOrder.objects.count() == 0


def test_float_json_numbers_are_parsed_as_decimals_not_floats(api, sim):
    r = raw(api, BUY, '{"market": "KRW-BTC", "amount_krw": 10000.1}')
    assert r.status_code == 201, r.content
    assert Order.objects.get().price == Decimal("10000.1")


def test_risk_limits_and_kill_switch_refuse_before_sending(api, user, sim):
    r = api.put(
        "/api/trading/risk-limits/",
        {"max_order_krw": "50000", "max_position_krw": "80000", "daily_loss_limit_krw": "100000"},
        format="json",
    )
    assert r.status_code == 200 and r.json()["risk_limits"]["max_order_krw"] == "50000"
    r = api.post(BUY, {"market": "KRW-BTC", "amount_krw": "60000"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "risk_limit"
    assert api.post(BUY, {"market": "KRW-BTC", "amount_krw": "50000"}, format="json").status_code == 201
    r = api.post(
        BUY, {"market": "KRW-BTC", "amount_krw": "40000"}, format="json"
    )  # position would pass 80,000
    assert r.status_code == 400 and r.json()["error"]["code"] == "risk_limit"
    assert PaperOrder.objects.count() == 1

    services.kill_switch_engage(reason="test")
    r = api.post(BUY, {"market": "KRW-BTC", "amount_krw": "10000"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "trading_halted"
    assert PaperOrder.objects.count() == 1
    assert TradingProfile.objects.get(user=user).auto_trading_halted


def test_kill_switch_cancels_open_orders_and_halts_auto_trading(user, other_user, sim):
    o1 = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    o2 = services.order_place(
        user=other_user, market="KRW-ETH", side="bid", ord_type="limit", price=d(4_000_000), volume=d("0.01")
    )
    counts = services.kill_switch_engage(reason="market chaos")
    assert counts == {"cancelled": 2, "failed": 0}
    assert {o.state for o in Order.objects.filter(pk__in=[o1.pk, o2.pk])} == {"cancelled"}
    assert TradingProfile.objects.filter(auto_trading_halted=True).count() == 2
    from trading.errors import TradingHalted

    with pytest.raises(TradingHalted):
        services.order_place(
            user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000), source="auto"
        )


def test_daily_loss_limit_halts_auto_trading_and_tells_the_user(user, sim, mailoutbox):
    services.risk_limits_update(
        user=user, max_order_krw=None, max_position_krw=None, daily_loss_limit_krw=d(100)
    )
    services.order_place(user=user, market="KRW-ETH", side="bid", ord_type="price", price=d(1_000_000))
    sim.set_book("KRW-ETH", [(4_001_000.0, 1.0)], [(4_000_000.0, 1.0)])  # ETH falls 20 %
    sim.trade("KRW-ETH", 4_000_000.0, 0.01, "ASK")
    from django.core.cache import cache

    cache.clear()
    assert services.daily_loss_check(user=user) is True
    profile = TradingProfile.objects.get(user=user)
    assert profile.auto_trading_halted and "Daily loss limit" in profile.halted_reason
    assert mailoutbox and "auto-trading stopped" in mailoutbox[-1].subject


def test_another_users_ids_are_404_on_every_endpoint(user, other_user, sim):
    order = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    so = services.scheduled_order_create(
        user=user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        trigger_type="time",
        trigger_at=timezone.now() + dt.timedelta(hours=1),
    )
    intruder = APIClient()
    intruder.force_authenticate(other_user)
    calls = [
        ("get", f"/api/trading/orders/{order.pk}/"),
        ("post", f"/api/trading/orders/{order.pk}/cancel/"),
        ("get", f"/api/trading/scheduled-orders/{so.pk}/"),
        ("delete", f"/api/trading/scheduled-orders/{so.pk}/"),
        ("post", f"/api/trading/scheduled-orders/{so.pk}/cancel/"),
    ]
    for method, url in calls:
        r = getattr(intruder, method)(url)
        assert r.status_code == 404, (method, url, r.status_code)
        assert r.json()["error"]["code"] == "not_found"
    assert intruder.get("/api/trading/orders/").json()["count"] == 0
    assert intruder.get("/api/trading/scheduled-orders/").json()["count"] == 0
    order.refresh_from_db()
    so.refresh_from_db()
    assert order.state == "open" and so.state == "pending"
    # Anonymous: 401/403, never data.
    anon = APIClient()
    for method, url in calls + [("get", "/api/trading/orders/"), ("get", "/api/trading/portfolio/")]:
        assert getattr(anon, method)(url).status_code in (401, 403)


def test_mode_is_in_every_response_and_history_has_fills_fees_source(api, user, sim):
    r = api.post(
        BUY, {"market": "KRW-BTC", "amount_krw": "150000"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert r.status_code == 201
    for url in [
        "/api/trading/mode/",
        "/api/trading/balances/",
        "/api/trading/portfolio/",
        "/api/trading/orders/",
        "/api/trading/scheduled-orders/",
        "/api/trading/risk-limits/",
    ]:
        resp = api.get(url)
        assert resp.status_code == 200, url
        assert resp.json()["mode"] == "paper" and resp["X-Trading-Mode"] == "paper"
    page = api.get("/api/trading/orders/?limit=10").json()
    [o] = page["results"]
    assert o["source"] == "manual" and o["client_order_id"] == "k-1" and o["paid_fee"] == "74.99975"
    assert [f["volume"] for f in o["fills"]] == ["0.001", "0.00049999"]
    detail = api.get(f"/api/trading/orders/{o['id']}/").json()
    assert detail["order"]["id"] == o["id"] and detail["mode"] == "paper"
    portfolio = api.get("/api/trading/portfolio/").json()["portfolio"]
    assert (
        portfolio["holdings"][0]["currency"] == "BTC" and portfolio["holdings"][0]["volume"] == "0.00149999"
    )


def test_switching_to_live_needs_keys_and_explicit_confirmation(api, user, sim):
    r = api.put("/api/trading/mode/", {"mode": "live"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "confirmation_required"
    r = api.put(
        "/api/trading/mode/", {"mode": "live", "confirm": True, "confirm_text": "LIVE"}, format="json"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "keys_missing"
    acct = sim.account(krw=1_000_000)
    ExchangeCredentialFactory(user=user, access_key=acct["access_key"], secret_key=acct["secret_key"])
    r = api.put("/api/trading/mode/", {"mode": "live", "confirm": True, "confirm_text": "yes"}, format="json")
    assert r.status_code == 400 and r.json()["mode"] == "paper"
    r = api.put(
        "/api/trading/mode/", {"mode": "live", "confirm": True, "confirm_text": "LIVE"}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["mode"] == "live" and r.json()["profile"]["has_exchange_keys"] is True
    assert r.json()["profile"]["live_confirmed_at"]
    balances = api.get("/api/trading/balances/").json()
    assert balances["mode"] == "live" and balances["balances"][0]["balance"] == "1000000"
    r = api.put("/api/trading/mode/", {"mode": "paper"}, format="json")  # back to paper: no ceremony
    assert r.status_code == 200 and r.json()["mode"] == "paper"


def test_live_balances_are_cached_not_polled(live_user, sim, django_assert_max_num_queries):
    from trading import selectors

    calls = []
    from trading.exchanges.upbit import UpbitExchange

    real = UpbitExchange.balances

    def counting(self):
        calls.append(1)
        return real(self)

    UpbitExchange.balances = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            selectors.portfolio_get(user=live_user)
    finally:
        UpbitExchange.balances = real  # type: ignore[method-assign]
    assert len(calls) == 1


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on a free port; Django sends to it over SMTP."""
    from aiosmtpd.controller import Controller

    from tests import live

    class Handler:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001
            self.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    handler = Handler()
    port = live.free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    try:
        yield handler
    finally:
        controller.stop()


def _parts(message: Any) -> dict[str, str]:
    return {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if p.get_content_type() in ("text/plain", "text/html")
    }


def test_email_report_arrives_over_smtp_with_text_and_html(api, user, sim, smtp_server):
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(150_000))
    r = api.post("/api/trading/report/")
    assert r.status_code == 200, r.content
    assert r.json()["sent_to"] == user.email and r.json()["mode"] == "paper"
    [message] = smtp_server.messages
    assert message["To"] == user.email
    parts = _parts(message)
    assert "BTC" in parts["text/plain"] and "0.00149999" in parts["text/plain"]
    assert "<table" in parts["text/html"] and "BTC" in parts["text/html"] and "PAPER" in parts["text/html"]


def test_daily_report_for_opted_in_users_only_in_their_language(user, other_user, sim, smtp_server):
    user.preferred_language = "ko"
    user.save()
    services.risk_limits_update(
        user=user, max_order_krw=None, max_position_krw=None, daily_loss_limit_krw=None, daily_report=True
    )
    services.trading_profile_ensure(user=other_user)  # not opted in
    from trading.tasks import send_daily_reports

    assert send_daily_reports() == {"sent": 1, "failed": 0}
    [message] = smtp_server.messages
    assert message["To"] == user.email
    from email.header import decode_header, make_header

    assert "자산 현황" in str(make_header(decode_header(message["Subject"])))
    assert "총 자산" in _parts(message)["text/plain"]


def test_report_with_smtp_down_is_a_clear_503(api, user, sim, settings):
    from tests import live

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", live.free_port(), 2
    r = api.post("/api/trading/report/")
    assert r.status_code == 503 and r.json()["error"]["code"] == "mail_unavailable"


def test_profile_page_sections_show_holdings_and_report_button(client, user, sim):
    from trading.views import profile_holdings_section, profile_report_section

    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    from django.test import RequestFactory

    request = RequestFactory().get("/profile")
    request.user = user
    html = profile_holdings_section(request)
    assert "BTC" in html and "0.001" in html and "PAPER" in html
    assert "send-report" in profile_report_section(request)
    client.force_login(user)
    page = client.get("/profile").content.decode()  # registered in settings.PROFILE_SECTIONS
    assert 'data-testid="profile-holdings"' in page and 'data-testid="send-report"' in page


def test_schemathesis_finds_no_server_error(user, other_user, sim):
    """Property-based requests from the OpenAPI schema against every trading operation, authenticated by
    token; bounded examples. Any 5xx fails (503 only where the exchange itself is unreachable)."""
    import schemathesis
    from django.core.wsgi import get_wsgi_application
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st
    from rest_framework.authtoken.models import Token

    services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    services.scheduled_order_create(
        user=other_user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        trigger_type="time",
        trigger_at=timezone.now() + dt.timedelta(hours=1),
    )
    token = Token.objects.create(user=user)
    app = get_wsgi_application()
    # Like Django's test client: keep the test's connection (and transaction) open between requests.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", app)
    headers = {"Authorization": f"Token {token.key}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    mine = set(TRADING_OPERATIONS)
    operations = [op for op in operations if op.definition.raw.get("operationId") in mine]
    assert len(operations) >= 14
    failures: list[str] = []

    def fuzz(op: Any) -> None:
        @hsettings(
            max_examples=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def run(data: Any) -> None:
            case = data.draw(op.as_strategy())
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{op.method.upper()} {op.path} -> {response.status_code}: {response.text[:200]}"
                )

        run()

    try:
        for op in operations:
            fuzz(op)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert not failures, failures
    assert ScheduledOrder.objects.filter(user=other_user, state="pending").count() == 1


def test_hot_reads_have_a_fixed_query_count(api, user, sim, django_assert_max_num_queries):
    for i in range(3):
        services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000 + i))
    from trading import selectors

    selectors.portfolio_get(user=user)  # warms the shared ticker/market caches
    with django_assert_max_num_queries(6):
        assert api.get("/api/trading/orders/").json()["count"] == 3
    for i in range(3):
        services.order_place(user=user, market="KRW-ETH", side="bid", ord_type="price", price=d(10_000 + i))
    with django_assert_max_num_queries(6):
        assert api.get("/api/trading/orders/").json()["count"] == 6  # no query per order or per fill
    selectors.portfolio_get(user=user)
    with django_assert_max_num_queries(6):
        assert len(selectors.portfolio_get(user=user).holdings) == 2


def test_paper_account_reset(api, user, sim):
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    open_order = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    r = api.post("/api/trading/paper/reset/")
    assert r.status_code == 200 and r.json()["mode"] == "paper"
    assert r.json()["balances"] == [
        {"currency": "KRW", "balance": "10000000", "locked": "0", "avg_buy_price": "0"}
    ]
    open_order.refresh_from_db()
    assert open_order.state == "cancelled"
    assert api.get("/api/trading/orders/?mode=paper").json()["count"] == 2  # history stays
    assert api.get("/api/trading/orders/?mode=live").json()["count"] == 0
    assert api.get("/api/trading/portfolio/").json()["portfolio"]["realized_pnl"] == "0"


def test_browser_session_needs_the_csrf_token(user, sim):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    body = '{"market": "KRW-BTC", "amount_krw": "10000"}'
    r = browser.post(BUY, body, content_type="application/json")
    assert r.status_code == 403 and Order.objects.count() == 0
    from django.middleware.csrf import _get_new_csrf_string  # what the page's csrftoken cookie carries

    token = _get_new_csrf_string()
    browser.cookies["csrftoken"] = token
    r = browser.post(BUY, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 201 and Order.objects.count() == 1


def test_a_cancelled_limit_order_keeps_what_was_ordered_in_the_history(api, user, sim):
    placed = api.post(
        "/api/trading/orders/limit/",
        {"market": "KRW-BTC", "side": "bid", "price": "90000000", "volume": "0.001"},
        format="json",
    )
    assert placed.status_code == 201, placed.content
    order_id = placed.json()["order"]["id"]
    assert api.post(f"/api/trading/orders/{order_id}/cancel/", {}, format="json").status_code == 200
    [row] = api.get("/api/trading/orders/").json()["results"]
    assert (row["state"], row["ord_type"], row["price"], row["volume"], row["executed_volume"]) == (
        "cancelled",
        "limit",
        "90000000",
        "0.001",
        "0",
    )
