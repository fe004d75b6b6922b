"""/api/trading/auto/: start, change, stop, sessions and decisions - validated and owner-scoped."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from autotrade.tasks import autotrade_on_prediction
from tests.accounts.factories import UserFactory
from tests.autotrade.conftest import prediction
from trading.models import OrderSource

pytestmark = pytest.mark.django_db
START = {"market": "KRW-BTC", "threshold_pct": "0.05", "order_krw": "100000", "cooldown_s": 0}


def test_start_list_decisions_and_stop(api, user, wide_book, active_models):
    r = api.post("/api/trading/auto/start/", START, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["mode"] == "paper"
    session = body["session"]
    assert session["threshold"] == "0.0005" and session["threshold_pct"] == "0.05"
    assert session["state"] == "running" and session["position"]["volume"] == "0"
    assert api.post("/api/trading/auto/start/", START, format="json").status_code == 409  # already running
    autotrade_on_prediction.run(prediction=prediction(0.003))
    autotrade_on_prediction.run(prediction=prediction(0.0001))
    listed = api.get("/api/trading/auto/").json()["sessions"]
    assert [s["id"] for s in listed] == [session["id"]] and listed[0]["position"]["volume"] != "0"
    ds = api.get("/api/trading/auto/decisions/").json()["decisions"]
    assert [d["action"] for d in ds] == ["hold", "buy"]  # newest first
    buy = ds[1]
    assert buy["cost"] == "0.002" and buy["threshold"] == "0.0005" and buy["order_state"] == "done"
    assert buy["predicted_return"] == "0.003" and buy["reason"] == "signal_buy"
    only = api.get("/api/trading/auto/decisions/?actions_only=1").json()["decisions"]
    assert [d["action"] for d in only] == ["buy"]
    r = api.post("/api/trading/auto/stop/", {"session_id": session["id"]}, format="json")
    assert r.status_code == 200 and r.json()["session"]["state"] == "stopped"
    assert api.post("/api/trading/auto/stop/", {"market": "KRW-BTC"}, format="json").status_code == 404
    # A stopped session keeps the threshold it ran with; the user's choice is kept for the next start.
    r = api.put(
        "/api/trading/auto/change/", {"session_id": session["id"], "threshold_pct": "0.1"}, format="json"
    )
    assert r.status_code == 200 and r.json()["session"] is None and r.json()["threshold_pct"] == "0.1"
    assert api.get("/api/trading/auto/").json()["sessions"][0]["threshold_pct"] == "0.05"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({**START, "threshold_pct": "6"}, "invalid_threshold"),
        ({**START, "threshold_pct": "-0.01"}, "invalid_threshold"),
        ({**START, "order_krw": "4999"}, "under_min_total"),
        ({**START, "market": "BTC-ETH"}, "market_not_found"),
        ({**START, "market": "KRW-XRP"}, "no_model"),
        ({**START, "max_position_krw": "50000"}, "invalid_limit"),
        ({**START, "stop_loss_pct": "150"}, "invalid_stop"),
        ({"market": "KRW-BTC"}, "invalid"),
        ({**START, "order_krw": "abc"}, "invalid"),
    ],
)
def test_start_refuses_bad_input_clearly(api, active_models, payload, code):
    r = api.post("/api/trading/auto/start/", payload, format="json")
    assert r.status_code in (400, 409), r.content
    assert r.json()["error"]["code"] == code


def test_start_respects_the_users_max_order(api, user, active_models):
    from decimal import Decimal

    from trading.services.profiles import risk_limits_update

    risk_limits_update(
        user=user, max_order_krw=Decimal(50_000), max_position_krw=None, daily_loss_limit_krw=None
    )
    r = api.post("/api/trading/auto/start/", START, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "risk_limit"


def test_owner_scoping_and_authentication(api, user, wide_book, active_models):
    sid = api.post("/api/trading/auto/start/", START, format="json").json()["session"]["id"]
    autotrade_on_prediction.run(prediction=prediction(0.003))
    other = APIClient()
    other.force_authenticate(UserFactory())
    assert other.get("/api/trading/auto/").json()["sessions"] == []
    assert other.get(f"/api/trading/auto/decisions/?session_id={sid}").json()["decisions"] == []
    assert other.post("/api/trading/auto/stop/", {"session_id": sid}, format="json").status_code == 404
    assert (
        other.put(
            "/api/trading/auto/change/", {"session_id": sid, "threshold_pct": "1"}, format="json"
        ).status_code
        == 404
    )
    assert APIClient().get("/api/trading/auto/").status_code in (401, 403)
    assert user.orders.filter(source=OrderSource.AUTO).count() == 1


def test_live_mode_needs_keys_and_trades_on_the_exchange(api, user, live_user, wide_book, active_models):
    from trading.models import TradingMode, TradingProfile

    TradingProfile.objects.update_or_create(user=user, defaults={"mode": TradingMode.LIVE})
    r = api.post("/api/trading/auto/start/", START, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "keys_missing"
    live = APIClient()
    live.force_authenticate(live_user)
    r = live.post("/api/trading/auto/start/", START, format="json")
    assert r.status_code == 201 and r.json()["session"]["mode"] == "live"
    autotrade_on_prediction.run(prediction=prediction(0.003))
    d = live.get("/api/trading/auto/decisions/").json()["decisions"][0]
    assert d["action"] == "buy" and d["outcome"] == "placed", d
    order = live_user.orders.get(pk=d["order_id"])
    assert (
        order.mode == "live" and order.source == OrderSource.AUTO and order.exchange_uuid
    )  # on the exchange
    assert wide_book.order_count(live_user.sim_account_id) == 1
    assert live.get("/api/trading/auto/?market=KRW-ETH").json()["sessions"] == []
    assert len(live.get("/api/trading/auto/?market=KRW-BTC").json()["sessions"]) == 1


def test_threshold_applied_while_stopped_is_kept_and_used_by_the_next_start(api, user, active_models, client):
    r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": "0.3"}, format="json")
    assert r.status_code == 200, r.content
    assert (
        r.json()["session"] is None
        and r.json()["threshold"] == "0.003"
        and r.json()["threshold_pct"] == "0.3"
    )
    client.force_login(user)
    config = client.get("/trade").context["config"]
    assert config["threshold"] == {"min": 0, "max": 5.0, "step": 0.01, "default": 0.3}
    start = {k: v for k, v in START.items() if k != "threshold_pct"}
    r = api.post("/api/trading/auto/start/", start, format="json")
    assert r.status_code == 201 and r.json()["session"]["threshold_pct"] == "0.3"
    r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": "4.99"}, format="json")
    assert r.json()["session"]["threshold_pct"] == "4.99" and r.json()["threshold_pct"] == "4.99"


@pytest.mark.parametrize(
    ("value", "code"), [("5.01", "invalid_threshold"), ("-0.01", "invalid_threshold"), ("x", "invalid")]
)
def test_threshold_out_of_range_is_a_clear_400_and_changes_nothing(api, user, value, code):
    r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": value}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    from autotrade.selectors import autotrade_threshold_get

    assert autotrade_threshold_get(user=user) == Decimal("0.0005")


def test_the_kept_threshold_is_written_on_the_first_choice_only(api, user, client):
    from autotrade.models import AutoTradeSettings

    client.force_login(user)
    assert client.get("/trade").context["config"]["threshold"]["default"] == 0.05  # the default, read only
    assert not AutoTradeSettings.objects.filter(user=user).exists()
    for _ in range(2):
        r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": "0.3"}, format="json")
        assert r.status_code == 200 and r.json()["threshold_pct"] == "0.3"
    assert list(AutoTradeSettings.objects.filter(user=user).values_list("threshold", flat=True)) == [
        Decimal("0.003")
    ]


def test_threshold_bounds_are_accepted(api, user):
    for value, kept in (("0", "0"), ("5", "5")):
        r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": value}, format="json")
        assert r.status_code == 200 and r.json()["threshold_pct"] == kept
