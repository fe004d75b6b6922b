"""Bad input never reaches a 5xx: JSON nested deeper than the decoder can follow is a 400 on every parser;
numbers past the database's range are a 400 (query, body) or a 404 (path); amounts are ASCII digits only and
times name their zone; a missing credential is a 401."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

NESTED = ("[" * 1000 + "]" * 1000).encode()
DEEPER = ('{"username": ' + "[" * 20_000 + "]" * 20_000 + "}").encode()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [NESTED, DEEPER], ids=["1000-deep", "20000-deep"])
def test_nested_json_is_a_400_on_the_unauthenticated_token_endpoint(body: bytes) -> None:
    response = APIClient().post("/api/accounts/token/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"] or response.json()["error"]["code"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/trading/orders/buy/"),
        ("post", "/api/trading/orders/limit/"),
        ("post", "/api/trading/scheduled-orders/"),
        ("post", "/api/trading/auto/start/"),
        ("put", "/api/trading/mode/"),
        ("put", "/api/trading/risk-limits/"),
        ("put", "/api/accounts/me/exchange-keys/"),
    ],
)
def test_nested_json_is_a_400_for_a_logged_in_user(method: str, path: str) -> None:
    user = get_user_model().objects.create_user(username="nest", password="pw-long-enough-1")
    client = APIClient()
    client.force_authenticate(user)
    response = getattr(client, method)(path, data=NESTED, content_type="application/json")
    assert response.status_code == 400, response.content[:200]


# -- numbers out of range: a 400 or a 404, never an OverflowError (500) -----------------------------------

HUGE = "99999999999999999999"  # > 2**63 - 1


@pytest.fixture
def api_user() -> APIClient:
    user = get_user_model().objects.create_user(username="ranges", password="pw-long-enough-1")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"/api/trading/auto/decisions/?session_id={HUGE}",
        "/api/trading/auto/decisions/?session_id=-1",
        "/api/trading/auto/decisions/?session_id=abc",
        f"/api/trading/auto/decisions/?limit={HUGE}",
        "/api/trading/auto/decisions/?limit=0",
        f"/api/trading/orders/?offset={HUGE}",
        f"/api/trading/scheduled-orders/?offset={HUGE}",
    ],
)
def test_out_of_range_query_parameters_are_a_400(api_user: APIClient, url: str) -> None:
    response = api_user.get(url)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"), [("post", "/api/trading/auto/stop/"), ("put", "/api/trading/auto/change/")]
)
def test_out_of_range_session_id_in_a_body_is_a_400(api_user: APIClient, method: str, path: str) -> None:
    body = {"session_id": int(HUGE), "threshold_pct": "1"}
    response = getattr(api_user, method)(path, data=body, format="json")
    assert response.status_code == 400 and "session_id" in response.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/trading/orders/{HUGE}/"),
        ("post", f"/api/trading/orders/{HUGE}/cancel/"),
        ("get", f"/api/trading/scheduled-orders/{HUGE}/"),
        ("delete", f"/api/trading/scheduled-orders/{HUGE}/"),
        ("post", f"/api/trading/scheduled-orders/{HUGE}/cancel/"),
        ("get", "/api/trading/orders/9223372036854775808/"),  # 2**63: one past the largest id
        ("get", "/api/nope/"),
    ],
)
def test_ids_past_the_database_range_and_unknown_api_paths_are_a_json_404(
    api_user: APIClient, method: str, path: str
) -> None:
    response = getattr(api_user, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"]


@pytest.mark.django_db
def test_model_report_with_an_id_past_the_range_is_a_404(client) -> None:  # noqa: ANN001
    user = get_user_model().objects.create_user(username="reports", password="pw-long-enough-1")
    client.force_login(user)
    assert client.get(f"/model/versions/{HUGE}/").status_code == 404


# -- amounts: ASCII digits only; time stamps must name their zone -----------------------------------------

NOT_ASCII = ["５０００", "٥٠٠٠", "+5000", "-5000", "5e3", "5,000", "5000\u200b", "\u0665000"]


@pytest.mark.django_db
@pytest.mark.parametrize("amount", NOT_ASCII)
def test_amounts_in_other_digits_or_with_a_sign_are_refused(api_user: APIClient, amount: str) -> None:
    from trading.models import Order

    response = api_user.post(
        "/api/trading/orders/buy/", data={"market": "KRW-BTC", "amount_krw": amount}, format="json"
    )
    assert response.status_code == 400, response.content[:300]
    message = response.json()["error"]["fields"]["amount_krw"][0]
    assert "0-9" in message or "number" in message.lower()
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["５０００0", "+50000", "٥٠٠٠٠"])
def test_auto_trading_amounts_follow_the_same_rule(api_user: APIClient, amount: str) -> None:
    response = api_user.post(
        "/api/trading/auto/start/",
        data={"market": "KRW-BTC", "order_krw": amount, "threshold_pct": "0.1"},
        format="json",
    )
    assert response.status_code == 400 and "order_krw" in response.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["trigger_at", "expires_at"])
@pytest.mark.parametrize("stamp", ["2030-01-01T10:00:00", "2030-01-01 10:00", "２０３０-01-01T10:00:00Z"])
def test_a_time_without_a_zone_is_refused(api_user: APIClient, field: str, stamp: str) -> None:
    from trading.models import ScheduledOrder

    body = {
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "price",
        "price": "10000",
        "trigger_type": "time",
        "trigger_at": "2030-01-01T10:00:00+09:00",
        field: stamp,
    }
    response = api_user.post("/api/trading/scheduled-orders/", data=body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["error"]["fields"]
    assert ScheduledOrder.objects.count() == 0


# -- a missing credential is a 401 with WWW-Authenticate; forbidden stays 403 ------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_AUTHORIZATION": "Token not-a-real-token"}], ids=["anonymous", "bad-token"]
)
@pytest.mark.parametrize(
    "path", ["/api/accounts/me/", "/api/trading/portfolio/", "/api/trading/auto/", "/api/ml/models/state/"]
)
def test_a_missing_or_wrong_credential_is_a_401_naming_the_scheme(headers: dict[str, str], path: str) -> None:
    response = APIClient().get(f"{path}?market=KRW-BTC", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


@pytest.mark.django_db
def test_a_logged_in_browser_without_the_csrf_token_is_still_a_403() -> None:
    from django.test import Client

    user = get_user_model().objects.create_user(username="csrf", password="pw-long-enough-1")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(
        "/api/trading/orders/buy/",
        '{"market": "KRW-BTC", "amount_krw": "10000"}',
        content_type="application/json",
    )
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "korean"),
    [
        ("５０００", "숫자는 0-9와 소수점만으로 입력하세요."),
        ("-5000", "금액은 부호 없이 0-9 숫자와 소수점만으로 입력하세요."),
    ],
)
def test_the_digits_rule_speaks_the_users_language(api_user: APIClient, amount: str, korean: str) -> None:
    response = api_user.post(
        "/api/trading/orders/buy/",
        data={"market": "KRW-BTC", "amount_krw": amount},
        format="json",
        HTTP_ACCEPT_LANGUAGE="ko",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["amount_krw"] == [korean]


@pytest.mark.django_db
def test_unknown_api_paths_are_a_json_404_with_debug_on_too(api_user: APIClient, settings) -> None:  # noqa: ANN001
    settings.DEBUG = True  # the local default: Django would answer its HTML debug page
    for path in ["/api/nope/", "/api/trading/orders/99999999999999999999/", "/api/trading/orders/x/"]:
        response = api_user.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert api_user.get("/api/trading/orders").status_code == 301  # APPEND_SLASH still redirects


@pytest.mark.django_db
def test_unknown_api_paths_are_a_json_404_for_a_browser_without_the_csrf_token() -> None:
    from django.test import Client

    user = get_user_model().objects.create_user(username="csrf404", password="pw-long-enough-1")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    for method in ("post", "delete"):
        response = getattr(browser, method)("/api/trading/scheduled-orders/-5/cancel/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("amount", NOT_ASCII)
def test_the_admins_risk_limits_follow_the_same_rule(amount: str, rf) -> None:  # noqa: ANN001
    """The operator's form for a user's limits reads numbers as the API does (it took '５０００' as 5000)."""
    from django.contrib import admin
    from django.forms.models import model_to_dict

    from trading import services
    from trading.models import TradingProfile

    user = get_user_model().objects.create_user(username="limits", email="l@example.com", password="x" * 12)
    profile = services.trading_profile_ensure(user=user)
    request = rf.get("/")
    request.user = get_user_model().objects.create_superuser("root", "r@example.com", "x" * 12)
    form_class = admin.site._registry[TradingProfile].get_form(request, profile)
    data = {k: ("" if v is None else v) for k, v in model_to_dict(profile).items()}
    form = form_class(data={**data, "max_order_krw": amount}, instance=profile)
    assert not form.is_valid() and "max_order_krw" in form.errors
    form = form_class(data={**data, "max_order_krw": "5000"}, instance=profile)
    assert form.is_valid(), form.errors
    form.save()
    assert TradingProfile.objects.get(pk=profile.pk).max_order_krw == 5000
