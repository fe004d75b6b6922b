"""Live mode end to end against the Upbit simulator (which verifies every JWT): place, partial fill, cancel,
reconcile after a crash, idempotent retries (sequential and concurrent), typed errors."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from tests.trading.conftest import d
from trading import selectors, services
from trading.errors import ExchangeAuthFailed, InsufficientFunds
from trading.exchanges.upbit import UpbitExchange
from trading.models import Order

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_live_market_buy_is_placed_on_the_exchange_with_fills(live_user, sim):
    order = services.order_place(
        user=live_user, market="KRW-BTC", side="bid", ord_type="price", price=d(150_000)
    )
    order.refresh_from_db()  # as stored: Upbit's 9-decimal fee kept to 8 decimals
    assert order.mode == "live" and order.exchange_uuid
    assert order.state == "done"
    assert order.executed_volume == d("0.00149999")
    assert order.fills.count() == 2
    assert order.paid_fee == d("74.99975")
    assert sim.order_count(live_user.sim_account_id) == 1
    # Balances come from the exchange: 1 BTC + what we bought.
    btc = next(b for b in selectors.balances_get(user=live_user) if b.currency == "BTC")
    assert btc.total == d("1.00149999")


def test_live_limit_partial_fill_then_cancel(live_user, sim):
    api = client_for(live_user)
    r = api.post(
        "/api/trading/orders/limit/",
        {"market": "KRW-BTC", "side": "bid", "price": "100000000", "volume": "0.003"},
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["mode"] == "live"
    assert body["order"]["state"] == "open"
    assert body["order"]["executed_volume"] == "0.001"  # took the 0.001 offered at its price; 0.002 rests
    order_id = body["order"]["id"]
    r = api.post(f"/api/trading/orders/{order_id}/cancel/")
    assert r.status_code == 200, r.content
    assert r.json()["order"]["state"] == "cancelled"
    assert r.json()["order"]["executed_volume"] == "0.001"
    [remote] = sim.orders_of(live_user.sim_account_id)
    assert remote.state == "cancel" and remote.executed_volume == d("0.001")
    # Cancelling again is a clear conflict, not a 500.
    assert api.post(f"/api/trading/orders/{order_id}/cancel/").status_code == 409


def test_resting_live_order_filled_later_is_picked_up_by_reconciliation(live_user, sim):
    order = services.order_place(
        user=live_user, market="KRW-BTC", side="bid", ord_type="limit", price=d(99_000_000), volume=d("0.002")
    )
    assert order.state == "open" and order.executed_volume == 0
    sim.set_book("KRW-BTC", [(98_900_000.0, 0.01)], [(98_800_000.0, 0.01)])  # the market falls through it
    counts = services.orders_reconcile()
    order.refresh_from_db()
    assert counts["changed"] == 1
    assert order.state == "done" and order.executed_volume == d("0.002") and order.fills.count() >= 1


def test_crash_after_sending_is_reconciled_and_never_placed_twice(live_user, sim, monkeypatch):
    real_place = UpbitExchange.place_order

    def place_then_crash(self, **kwargs):
        real_place(self, **kwargs)  # the request reached Upbit ...
        raise SystemExit("worker killed")  # ... and the process died before recording the answer

    monkeypatch.setattr(UpbitExchange, "place_order", place_then_crash)
    with pytest.raises(SystemExit):
        services.order_place(
            user=live_user,
            market="KRW-BTC",
            side="bid",
            ord_type="price",
            price=d(50_000),
            idempotency_key="crash-1",
        )
    order = Order.objects.get(user=live_user, idempotency_key="crash-1")
    assert order.state == "pending" and not order.exchange_uuid
    monkeypatch.setattr(UpbitExchange, "place_order", real_place)

    # A retry of the same request returns the same order; it does not send a second one.
    again = services.order_place(
        user=live_user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(50_000),
        idempotency_key="crash-1",
    )
    assert again.pk == order.pk
    assert sim.order_count(live_user.sim_account_id) == 1

    services.orders_reconcile()  # worker start-up / periodic reconciliation, by identifier
    order.refresh_from_db()
    assert order.state == "done" and order.exchange_uuid and order.executed_volume > 0
    assert order.fills.count() >= 1
    assert sim.order_count(live_user.sim_account_id) == 1


def test_pending_order_that_never_reached_the_exchange_is_closed(live_user, sim):
    order = Order.objects.create(
        user=live_user,
        mode="live",
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        idempotency_key="never-sent",
        state="pending",
    )
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    services.orders_reconcile()
    order.refresh_from_db()
    assert order.state == "rejected" and sim.order_count(live_user.sim_account_id) == 0


def test_idempotent_retry_over_the_api_returns_the_same_order(live_user, sim):
    api = client_for(live_user)
    payload = {"market": "KRW-BTC", "amount_krw": "20000"}
    r1 = api.post("/api/trading/orders/buy/", payload, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    r2 = api.post("/api/trading/orders/buy/", payload, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert r1.status_code == 201 and r2.status_code == 201
    assert r1.json()["order"]["id"] == r2.json()["order"]["id"]
    assert sim.order_count(live_user.sim_account_id) == 1
    # Same key, different request: refused, nothing sent.
    r3 = api.post(
        "/api/trading/orders/buy/",
        {"market": "KRW-BTC", "amount_krw": "30000"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="retry-1",
    )
    assert r3.status_code == 409 and r3.json()["error"]["code"] == "idempotency_conflict"
    assert sim.order_count(live_user.sim_account_id) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submit_places_once(live_user, sim):
    barrier = threading.Barrier(2)
    results: list[object] = []

    def submit() -> None:
        try:
            barrier.wait(timeout=10)
            o = services.order_place(
                user=live_user,
                market="KRW-BTC",
                side="bid",
                ord_type="price",
                price=d(20_000),
                idempotency_key="double-click",
            )
            results.append(o.pk)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and all(isinstance(r, int) for r in results), results
    assert results[0] == results[1]
    assert Order.objects.filter(user=live_user, idempotency_key="double-click").count() == 1
    assert sim.order_count(live_user.sim_account_id) == 1


def test_exchange_errors_are_typed_and_translated(live_user, sim):
    # Balance is checked before sending: nothing reaches the exchange.
    with pytest.raises(InsufficientFunds):
        services.order_place(
            user=live_user, market="KRW-BTC", side="bid", ord_type="price", price=d(20_000_000)
        )
    assert sim.order_count(live_user.sim_account_id) == 0
    api = client_for(live_user)
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = "ko"
    r = api.post("/api/trading/orders/sell/", {"market": "KRW-BTC", "volume": "5"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "insufficient_funds"
    assert r.json()["error"]["message"].startswith("BTC이(가) 부족합니다")  # in the user's language
    assert r.json()["mode"] == "live"
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    r = api.post("/api/trading/orders/sell/", {"market": "KRW-BTC", "volume": "5"}, format="json")
    assert r.json()["error"]["message"] == "Not enough BTC: 1 is available."


def test_wrong_keys_give_a_clear_auth_error(sim, db):
    from tests.accounts.factories import ExchangeCredentialFactory, UserFactory
    from trading.models import TradingProfile

    u = UserFactory()
    ExchangeCredentialFactory(user=u)  # keys the exchange does not know
    TradingProfile.objects.create(user=u, mode="live")
    with pytest.raises(ExchangeAuthFailed):
        services.order_place(user=u, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    r = client_for(u).get("/api/trading/balances/")
    assert r.status_code == 403 and r.json()["error"]["code"] == "exchange_auth"


def test_exchange_side_rejection_is_stored_and_replayed(live_user, sim, settings):
    """An order our checks let through but Upbit refuses: typed 400, the row is ``rejected``, and a retry with
    the same key gets the same answer without sending again (Upbit burns an identifier forever)."""
    settings.UPBIT_MIN_ORDER_KRW = 1000  # our pre-check is looser than the exchange's 5,000 KRW
    api = client_for(live_user)
    body = {"market": "KRW-BTC", "amount_krw": "3000"}
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="too-small")
    assert r.status_code == 400 and r.json()["error"]["code"] == "under_min_total"
    order = Order.objects.get(idempotency_key="too-small")
    assert order.state == "rejected" and order.error_code == "under_min_total"
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="too-small")
    assert r.status_code == 400 and r.json()["error"]["code"] == "under_min_total"
    assert Order.objects.filter(user=live_user).count() == 1


def test_live_buy_above_the_exchange_maximum_is_told_the_maximum(live_user, user, sim):
    """Upbit's ``over_krw_funds_bid`` reaches the user as the maximum it is (not "at least 5,000 KRW"), with
    the answer the paper exchange's pre-check gives an order above the maximum."""
    from decimal import Decimal

    sim.thread.call(lambda s: setattr(s.engine, "max_total", Decimal(5_000_000)))  # below our 1e9 check
    api = client_for(live_user)
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    body = {"market": "KRW-BTC", "amount_krw": "6000000"}
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="too-big")
    assert r.status_code == 400
    live = r.json()["error"]
    assert live["code"] == "invalid_order" and "maximum" in live["message"]
    assert Order.objects.get(idempotency_key="too-big").state == "rejected"
    assert sim.order_count(live_user.sim_account_id) == 0

    paper = client_for(user)
    paper.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    over = {"market": "KRW-BTC", "amount_krw": "1000000001"}
    r = paper.post("/api/trading/orders/buy/", over, format="json")
    assert r.status_code == 400 and r.json()["mode"] == "paper"
    assert (r.json()["error"]["code"], r.json()["error"]["message"]) == (live["code"], live["message"])


def test_market_under_maintenance_says_so_and_keeps_the_key_usable(live_user, sim, monkeypatch):
    """``market_offline`` (403): a definite refusal for now. The user is told the market is under maintenance
    (not that it does not exist, nor that the outcome is unknown); no row is kept, so the same key places the
    order once the market is back."""
    from market.upbit.client import UpbitClient
    from market.upbit.errors import error_from_response

    real = UpbitClient.place_order

    def offline(self, **kwargs):
        raise error_from_response(403, b'{"error":{"name":"market_offline","message":"m"}}')

    monkeypatch.setattr(UpbitClient, "place_order", offline)
    api = client_for(live_user)
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    body = {"market": "KRW-BTC", "amount_krw": "10000"}
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="offline")
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "market_offline" and "maintenance" in err["message"] and "order_id" not in err
    assert not Order.objects.filter(idempotency_key="offline").exists()
    monkeypatch.setattr(UpbitClient, "place_order", real)
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="offline")
    assert r.status_code == 201, r.json()
    assert sim.order_count(live_user.sim_account_id) == 1


def test_unknown_outcome_stays_pending_then_reconciles(live_user, sim, monkeypatch):
    from trading.errors import ExchangeUnavailable

    def down(self, **kwargs):
        raise ExchangeUnavailable()

    monkeypatch.setattr(UpbitExchange, "place_order", down)
    api = client_for(live_user)
    r = api.post("/api/trading/orders/buy/", {"market": "KRW-BTC", "amount_krw": "10000"}, format="json")
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "exchange_unavailable" and err["order_id"]
    order = Order.objects.get(pk=err["order_id"])
    assert order.state == "pending"
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    services.orders_reconcile()  # Upbit does not know the identifier: it was never placed
    order.refresh_from_db()
    assert order.state == "rejected" and sim.order_count(live_user.sim_account_id) == 0


@pytest.mark.parametrize(
    ("name", "status", "cls_name", "code", "http"),
    [
        ("insufficient_funds_bid", 400, "InsufficientFunds", "insufficient_funds", 400),
        ("under_min_total_ask", 400, "UnderMinTotal", "under_min_total", 400),
        ("invalid_price_bid", 400, "InvalidPriceUnit", "invalid_price_unit", 400),
        ("jwt_verification", 401, "UpbitAuthError", "exchange_auth", 403),
        ("out_of_scope", 403, "UpbitAuthError", "exchange_auth", 403),
        ("too_many_requests", 429, "RateLimited", "rate_limited", 429),
        (500, 500, "UpbitUnavailable", "exchange_unavailable", 503),
        ("notfoundmarket", 400, "MarketNotFound", "market_not_found", 400),
        ("order_not_found", 404, "OrderNotFound", "exchange_order_not_found", 404),
    ],
)
def test_upbit_errors_map_to_typed_application_errors(name, status, cls_name, code, http):
    from market.upbit import errors as upbit_errors
    from trading.errors import from_upbit

    exc = getattr(upbit_errors, cls_name)(name, "msg", status)
    mapped = from_upbit(exc)
    assert (mapped.code, mapped.status_code) == (code, http)
    assert str(mapped.message) and "msg" not in str(mapped.message)


def test_open_live_orders_are_refreshed_every_few_seconds(live_user, sim):
    from trading.tasks import sync_open_orders

    order = services.order_place(
        user=live_user,
        market="KRW-BTC",
        side="ask",
        ord_type="limit",
        price=d(101_000_000),
        volume=d("0.002"),
    )
    assert order.state == "open"
    assert sync_open_orders() == 0  # just looked at: not re-read yet (rate limits)
    sim.set_book("KRW-BTC", [(101_500_000.0, 0.01)], [(101_200_000.0, 0.01)])  # buyers above our price
    Order.objects.filter(pk=order.pk).update(last_synced_at=timezone.now() - dt.timedelta(seconds=6))
    assert sync_open_orders() == 1
    order.refresh_from_db()
    assert order.state == "done" and order.executed_volume == d("0.002")


def test_rate_limited_order_can_be_retried_with_the_same_key(live_user, sim, monkeypatch):
    from trading.errors import ExchangeRateLimited

    real = UpbitExchange.place_order

    def limited(self, **kwargs):
        raise ExchangeRateLimited()

    monkeypatch.setattr(UpbitExchange, "place_order", limited)
    api = client_for(live_user)
    body = {"market": "KRW-BTC", "amount_krw": "10000"}
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="busy-1")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert not Order.objects.filter(idempotency_key="busy-1").exists()
    monkeypatch.setattr(UpbitExchange, "place_order", real)
    r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="busy-1")
    assert r.status_code == 201 and sim.order_count(live_user.sim_account_id) == 1
