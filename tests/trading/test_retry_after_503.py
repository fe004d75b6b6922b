"""A retry of an order whose first attempt got a 503 (exchange unreachable) tells the truth: the order as the
exchange has it, placed now when it certainly never was (once), or 503 ``order_unconfirmed`` while the
exchange cannot tell yet. Never a "pending" 201 for an order nobody took, never a second order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.live import free_port
from trading import marketdata
from trading.errors import ExchangeUnavailable
from trading.exchanges.paper import paper_account_ensure
from trading.exchanges.upbit import UpbitExchange
from trading.models import Order, PaperBalance, PaperOrder

pytestmark = pytest.mark.django_db
BUY = "/api/trading/orders/buy/"
BODY = {"market": "KRW-BTC", "amount_krw": "20000"}


def client_for(user) -> APIClient:  # noqa: ANN001
    c = APIClient()
    c.force_authenticate(user)
    return c


def unreachable_url() -> str:
    """A local address nothing listens on: every connection is refused, as when the exchange is down."""
    return f"http://127.0.0.1:{free_port()}"


def buy(api: APIClient, key: str):  # noqa: ANN201
    return api.post(BUY, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)


def krw(user) -> Decimal:  # noqa: ANN001
    return PaperBalance.objects.get(user=user, currency="KRW").balance


def test_paper_order_the_unreachable_exchange_refused_is_not_placed_and_its_retry_places_it_once(
    user, sim, settings
):
    api = client_for(user)
    paper_account_ensure(user=user)
    marketdata.market_codes()  # the market list is cached; the book is read for each fill
    before = krw(user)
    settings.UPBIT_REST_URL = unreachable_url()  # the simulator cannot be reached for the fill's book

    r = buy(api, "paper-503")
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "exchange_unavailable" and "not placed" in err["message"]
    assert "order_id" not in err  # no order to look at: there is none
    assert not Order.objects.filter(user=user, idempotency_key="paper-503").exists()
    assert not PaperOrder.objects.filter(user=user).exists() and krw(user) == before

    settings.UPBIT_REST_URL = sim.rest_url  # back
    r = buy(api, "paper-503")
    assert r.status_code == 201 and r.json()["order"]["state"] == "done"
    again = buy(api, "paper-503")
    assert again.status_code == 201 and again.json()["order"]["id"] == r.json()["order"]["id"]
    assert Order.objects.filter(user=user, idempotency_key="paper-503").count() == 1
    assert PaperOrder.objects.filter(user=user).count() == 1
    assert before - krw(user) == Decimal("20010")  # 20,000 KRW and the 0.05 % fee, taken once


def test_paper_order_left_pending_by_an_earlier_503_is_placed_once_on_retry(user, sim):
    """Rows an earlier version left ``pending`` after a 503: the retry no longer answers 201 "pending"."""
    api = client_for(user)
    first = Order.objects.create(
        user=user,
        mode="paper",
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=Decimal(20000),
        state="pending",
        idempotency_key="paper-old",
        error_code="exchange_unavailable",
    )
    r = buy(api, "paper-old")
    assert r.status_code == 201 and r.json()["order"]["state"] == "done"
    assert not Order.objects.filter(pk=first.pk).exists()
    assert Order.objects.filter(user=user, idempotency_key="paper-old").count() == 1
    assert PaperOrder.objects.filter(user=user, identifier="paper-old").count() == 1


def _unreachable_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /v1/orders meets a refused connection (everything before it, the balance check, works)."""
    real = UpbitExchange.place_order

    def place(self: UpbitExchange, **kwargs: object):  # noqa: ANN202
        url = self.client.base_url
        self.client.base_url = unreachable_url() + "/v1"
        try:
            return real(self, **kwargs)
        finally:
            self.client.base_url = url

    monkeypatch.setattr(UpbitExchange, "place_order", place)


def test_live_retry_is_unconfirmed_until_the_order_certainly_never_arrived_then_places_it_once(
    live_user, sim, monkeypatch
):
    api = client_for(live_user)
    _unreachable_place(monkeypatch)
    r = buy(api, "live-503")
    assert r.status_code == 503 and r.json()["error"]["code"] == "exchange_unavailable"
    order_id = r.json()["error"]["order_id"]
    assert sim.order_count(live_user.sim_account_id) == 0
    monkeypatch.undo()

    # At once: Upbit does not know the identifier, but a request of the first attempt could still arrive.
    r = buy(api, "live-503")
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "order_unconfirmed" and err["order_id"] == order_id
    assert "not confirmed" in err["message"] and sim.order_count(live_user.sim_account_id) == 0

    # Past the grace period nothing of the first attempt can arrive: this retry places the order, once.
    Order.objects.filter(pk=order_id).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    r = buy(api, "live-503")
    assert r.status_code == 201 and r.json()["order"]["state"] == "done"
    assert sim.order_count(live_user.sim_account_id) == 1
    again = buy(api, "live-503")
    assert again.status_code == 201 and again.json()["order"]["id"] == r.json()["order"]["id"]
    assert sim.order_count(live_user.sim_account_id) == 1
    assert Order.objects.filter(user=live_user, idempotency_key="live-503").count() == 1


def test_live_retry_returns_the_order_the_first_attempt_placed_though_its_answer_was_lost(
    live_user, sim, monkeypatch
):
    real = UpbitExchange.place_order

    def place_then_lose_the_answer(self: UpbitExchange, **kwargs: object):  # noqa: ANN202
        real(self, **kwargs)  # Upbit took it ...
        raise ExchangeUnavailable()  # ... and the answer never came back

    monkeypatch.setattr(UpbitExchange, "place_order", place_then_lose_the_answer)
    api = client_for(live_user)
    r = buy(api, "live-lost")
    assert r.status_code == 503 and r.json()["error"]["code"] == "exchange_unavailable"
    order_id = r.json()["error"]["order_id"]
    monkeypatch.undo()

    r = buy(api, "live-lost")
    assert r.status_code == 201
    order = r.json()["order"]
    assert order["id"] == order_id and order["state"] == "done"  # as the exchange has it, not "pending"
    assert Order.objects.get(pk=order_id).fills.exists()
    assert sim.order_count(live_user.sim_account_id) == 1


def test_live_retry_while_the_exchange_is_still_unreachable_is_unconfirmed(live_user, sim, monkeypatch):
    api = client_for(live_user)
    _unreachable_place(monkeypatch)
    r = buy(api, "live-down")
    order_id = r.json()["error"]["order_id"]
    Order.objects.filter(pk=order_id).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    real_get = UpbitExchange.get_order

    def get_unreachable(self: UpbitExchange, **kwargs: object):  # noqa: ANN202
        url = self.client.base_url
        self.client.base_url = unreachable_url() + "/v1"
        try:
            return real_get(self, **kwargs)
        finally:
            self.client.base_url = url

    monkeypatch.setattr(UpbitExchange, "get_order", get_unreachable)
    r = buy(api, "live-down")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "order_unconfirmed" and r.json()["error"]["order_id"] == order_id
    assert Order.objects.get(pk=order_id).state == "pending"  # left to reconciliation
    assert sim.order_count(live_user.sim_account_id) == 0
