"""Admin (read-only money fields, the kill switch and its action) and per-user order throttling."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.accounts.factories import UserFactory
from tests.trading.conftest import d
from trading import services
from trading.models import Order, TradingSwitch

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = UserFactory(username="opsadmin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_pages_and_read_only_money_fields(admin_client, user, sim):
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    for url in [
        "/admin/trading/order/",
        f"/admin/trading/order/{order.pk}/change/",
        "/admin/trading/scheduledorder/",
        "/admin/trading/tradingprofile/",
        "/admin/trading/tradingswitch/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    page = admin_client.get(f"/admin/trading/order/{order.pk}/change/").content.decode()
    assert (
        'name="price"' not in page and 'name="executed_volume"' not in page and 'name="paid_fee"' not in page
    )


def test_admin_kill_switch_action_cancels_everything_and_blocks_orders(admin_client, user, sim):
    order = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    r = admin_client.post("/admin/trading/tradingswitch/", {"action": "engage", "_selected_action": ["1"]})
    assert r.status_code == 302
    assert TradingSwitch.objects.get(pk=1).engaged
    order.refresh_from_db()
    assert order.state == "cancelled"
    api = APIClient()
    api.force_authenticate(user)
    r = api.post("/api/trading/orders/buy/", {"market": "KRW-BTC", "amount_krw": "10000"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "trading_halted"
    assert api.get("/api/trading/mode/").json()["profile"]["kill_switch_engaged"] is True
    admin_client.post("/admin/trading/tradingswitch/", {"action": "release", "_selected_action": ["1"]})
    r = api.post("/api/trading/orders/buy/", {"market": "KRW-BTC", "amount_krw": "10000"}, format="json")
    assert r.status_code == 201


def test_order_endpoints_are_throttled_per_user(user, other_user, sim, monkeypatch):
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "1000/min", "anon": "1000/min", "orders": "3/min"}
    )
    api, other = APIClient(), APIClient()
    api.force_authenticate(user)
    other.force_authenticate(other_user)
    body = {"market": "KRW-BTC", "amount_krw": "5000"}
    codes = [api.post("/api/trading/orders/buy/", body, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert Order.objects.filter(user=user).count() == 3
    assert api.get("/api/trading/orders/").status_code == 200  # reads are not in the orders scope
    assert other.post("/api/trading/orders/buy/", body, format="json").status_code == 201  # per user


def test_profile_report_button_sends_the_mail(client, user, sim, mailoutbox):
    client.force_login(user)
    r = client.post("/trading/report/send")
    assert r.status_code == 302 and r["Location"] == "/profile"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [user.email]
    assert client.get("/trading/report/send").status_code == 405


def test_management_commands(user, sim):
    from io import StringIO

    from django.core.management import call_command

    services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    out = StringIO()
    call_command("trading_reconcile", stdout=out)
    assert "checked 1" in out.getvalue()
    call_command("trading_kill_switch", "engage", stdout=out)
    assert "1 orders cancelled" in out.getvalue()
    call_command("trading_kill_switch", "status", stdout=out)
    assert out.getvalue().strip().endswith("engaged")
    call_command("trading_kill_switch", "release", stdout=out)
    assert not TradingSwitch.objects.get(pk=1).engaged


def test_daily_report_defaults_to_the_signup_email_choice(db):
    from trading.services import trading_profile_ensure

    assert trading_profile_ensure(user=UserFactory(email_opt_in=True)).daily_report is True
    assert trading_profile_ensure(user=UserFactory(email_opt_in=False)).daily_report is False


def test_the_profile_selector_reads_without_writing(db):
    """Before the first write the selector answers the defaults the profile will be created with, and stores
    nothing; the service creates the row."""
    from trading.models import TradingProfile
    from trading.selectors import profile_get
    from trading.services import trading_profile_ensure

    user = UserFactory(email_opt_in=True)
    read = profile_get(user=user)
    assert (read.pk, read.mode, read.daily_report) == (None, "paper", True)
    assert not TradingProfile.objects.filter(user=user).exists()
    stored = trading_profile_ensure(user=user)
    assert stored.pk is not None and profile_get(user=user).pk == stored.pk
