"""Saving Upbit keys checks them first with a read-only GET /v1/accounts (against the local simulator here).

Valid keys are stored at once; keys Upbit refuses, or keys that cannot be checked because Upbit is
unreachable, are stored only when the user ticks "Save these keys anyway". The secret is never echoed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from accounts.keycheck import KeyCheckStatus
from accounts.selectors import exchange_credentials_get
from accounts.services import exchange_credential_check
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests import live
from tests.accounts.factories import upbit_key

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=["KRW-BTC"], seed=5, tick_ms=50)) as s:
        yield s


@pytest.fixture
def real_check(settings, sim: SimulatorThread) -> SimulatorThread:  # noqa: ANN001
    settings.EXCHANGE_KEY_CHECK = "market.keycheck.upbit_keys_check"
    settings.UPBIT_REST_URL = sim.rest_url
    return sim


@pytest.fixture
def sim_keys(real_check: SimulatorThread) -> tuple[str, str]:
    access, secret = upbit_key(), upbit_key()
    real_check.create_account(krw="1000000", access_key=access, secret_key=secret)
    return access, secret


def _post(client: Client, access: str, secret: str, **extra: str):  # noqa: ANN202
    return client.post("/profile", {"access_key": access, "secret_key": secret, **extra})


def test_valid_keys_are_checked_and_stored(logged_in: Client, user, sim_keys):
    access, secret = sim_keys
    response = _post(logged_in, access, secret)
    assert response.status_code == 302
    assert exchange_credentials_get(user=user) == (access, secret)
    html = logged_in.get("/profile").content.decode()
    assert "Upbit accepted your keys" in html and secret not in html


def test_unknown_access_key_is_refused_and_not_stored_until_confirmed(logged_in: Client, user, real_check):
    access, secret = upbit_key(), upbit_key()
    response = _post(logged_in, access, secret)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="key-check" data-status="invalid"' in html
    assert "Upbit refused these keys." in html and "Upbit does not know this access key." in html
    assert "invalid_access_key" in html and 'name="save_anyway"' in html
    assert access not in html and secret not in html
    assert exchange_credentials_get(user=user) is None

    response = _post(logged_in, access, secret, save_anyway="on")
    assert response.status_code == 302
    assert exchange_credentials_get(user=user) == (access, secret)
    html = logged_in.get("/profile").content.decode()
    assert "saved without a successful check" in html and "invalid_access_key" in html


def test_a_wrong_secret_is_told_apart_from_an_unknown_key(logged_in: Client, user, sim_keys):
    access, _secret = sim_keys
    response = _post(logged_in, access, upbit_key())
    html = response.content.decode()
    assert response.status_code == 400 and "jwt_verification" in html
    assert "The secret key does not belong to this access key." in html
    assert exchange_credentials_get(user=user) is None


def test_unreachable_upbit_says_could_not_verify_and_saves_only_when_confirmed(
    logged_in: Client, user, settings
):
    settings.EXCHANGE_KEY_CHECK = "market.keycheck.upbit_keys_check"
    settings.UPBIT_REST_URL = f"http://127.0.0.1:{live.free_port()}"  # nothing listens there
    access, secret = upbit_key(), upbit_key()
    response = _post(logged_in, access, secret)
    html = response.content.decode()
    assert response.status_code == 400 and 'data-status="unreachable"' in html
    assert "Your keys could not be verified." in html and "Upbit could not be reached" in html
    assert exchange_credentials_get(user=user) is None
    assert _post(logged_in, access, secret, save_anyway="on").status_code == 302
    assert exchange_credentials_get(user=user) == (access, secret)


def must_not_be_called(**_kw: str) -> None:
    raise AssertionError("malformed keys were sent to Upbit")


def test_malformed_keys_are_never_sent_to_upbit(logged_in: Client, user, settings):
    settings.EXCHANGE_KEY_CHECK = "tests.accounts.test_key_check.must_not_be_called"
    response = _post(logged_in, "A" * 39, upbit_key(), save_anyway="on")
    assert response.status_code == 400 and "exactly 40 letters and digits" in response.content.decode()
    assert exchange_credentials_get(user=user) is None


def test_the_check_service_reports_each_outcome(real_check, sim_keys):
    access, secret = sim_keys
    assert exchange_credential_check(access_key=access, secret_key=secret).status is KeyCheckStatus.VALID
    refused = exchange_credential_check(access_key=upbit_key(), secret_key=secret)
    assert refused.status is KeyCheckStatus.INVALID and refused.error_name == "invalid_access_key"


# --- the same rule through the REST API -------------------------------------------------------------------

KEYS_API = "/api/accounts/me/exchange-keys/"


def test_api_stores_keys_upbit_accepts(api, user, sim_keys):
    access, secret = sim_keys
    response = api.put(KEYS_API, {"access_key": access, "secret_key": secret}, format="json")
    assert response.status_code == 200 and response.json()["stored"] is True
    assert exchange_credentials_get(user=user) == (access, secret)


def test_api_refused_keys_are_a_400_and_stored_only_with_save_anyway(api, user, real_check):
    access, secret = upbit_key(), upbit_key()
    response = api.put(KEYS_API, {"access_key": access, "secret_key": secret}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "exchange_keys_refused" and error["upbit_error"] == "invalid_access_key"
    assert error["saved"] is False and secret not in response.content.decode()
    assert exchange_credentials_get(user=user) is None
    body = {"access_key": access, "secret_key": secret, "save_anyway": True}
    assert api.put(KEYS_API, body, format="json").status_code == 200
    assert exchange_credentials_get(user=user) == (access, secret)


def test_api_unreachable_upbit_is_a_503_that_says_so(api, user, settings):
    settings.EXCHANGE_KEY_CHECK = "market.keycheck.upbit_keys_check"
    settings.UPBIT_REST_URL = f"http://127.0.0.1:{live.free_port()}"
    response = api.put(KEYS_API, {"access_key": upbit_key(), "secret_key": upbit_key()}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "exchange_keys_unverified"
    assert exchange_credentials_get(user=user) is None
