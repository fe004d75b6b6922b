"""Accounts REST API: own profile, exchange keys, API tokens for scripts, OpenAPI documentation."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ExchangeCredential
from accounts.selectors import exchange_credentials_get
from tests.accounts.factories import PASSWORD, ExchangeCredentialFactory, upbit_key

pytestmark = pytest.mark.django_db
ME = "/api/accounts/me/"
KEYS = "/api/accounts/me/exchange-keys/"
TOKEN = "/api/accounts/token/"


def test_anonymous_callers_get_nothing():
    anonymous = APIClient()
    for method, url in (("get", ME), ("patch", ME), ("put", KEYS), ("delete", KEYS), ("delete", TOKEN)):
        assert getattr(anonymous, method)(url).status_code in (401, 403), (method, url)


def test_me_returns_profile_fields_and_key_status(api: APIClient, user):
    body = api.get(ME).json()
    assert body["username"] == user.username and body["email"] == user.email
    assert body["exchange_keys"] == {
        "stored": False,
        "exchange": None,
        "access_key_hint": None,
        "updated_at": None,
    }
    assert "password" not in body


def test_patch_me_updates_only_profile_fields(api: APIClient, user):
    response = api.patch(
        ME,
        {
            "email": "Me@Kakao.com",
            "phone": "01077778888",
            "email_opt_in": True,
            "preferred_language": "ko",
            "username": "hijack",
            "is_staff": True,
        },
        format="json",
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.email, user.phone, user.email_opt_in, user.preferred_language) == (
        "me@kakao.com",
        "010-7777-8888",
        True,
        "ko",
    )
    assert user.username != "hijack" and not user.is_staff


def test_patch_me_rejects_bad_values_with_field_messages(api: APIClient, user):
    response = api.patch(ME, {"phone": "12345", "email": "nope"}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "phone" in fields and "email" in fields
    assert api.patch(ME, {"preferred_language": "fr"}, format="json").status_code == 400


def test_patch_me_refuses_an_e_mail_another_account_uses_but_keeps_ones_own(api: APIClient, user, other_user):
    response = api.patch(ME, {"email": other_user.email.upper()}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["email"] == [
        "Another account already uses this e-mail address."
    ]
    assert api.patch(ME, {"email": user.email.upper()}, format="json").status_code == 200


def test_put_and_delete_exchange_keys(api: APIClient, user):
    access, secret = upbit_key(), upbit_key()
    response = api.put(KEYS, {"access_key": access, "secret_key": secret}, format="json")
    assert response.status_code == 200
    assert response.json()["stored"] is True
    assert exchange_credentials_get(user=user) == (access, secret)
    bad = api.put(KEYS, {"access_key": "short", "secret_key": secret}, format="json")
    assert bad.status_code == 400 and "access_key" in bad.json()["error"]["fields"]
    assert exchange_credentials_get(user=user) == (access, secret)  # untouched by the bad request
    assert api.delete(KEYS).status_code == 204
    assert not ExchangeCredential.objects.filter(user=user).exists()


def test_token_for_scripts(user):
    client = APIClient()
    response = client.post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(ME).json()["username"] == user.username
    assert client.delete(TOKEN).status_code == 204
    assert not Token.objects.filter(user=user).exists()
    assert client.get(ME).status_code in (401, 403)  # the revoked token no longer works


def test_token_failure_is_generic_and_locks_out_after_five(user):
    client = APIClient()
    for _ in range(4):
        response = client.post(TOKEN, {"username": user.username, "password": "Wrong!pass1"}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "The username or password is incorrect."
    assert (
        client.post(TOKEN, {"username": user.username, "password": "Wrong!pass1"}, format="json").status_code
        == 429
    )
    response = client.post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert "Too many failed login attempts" in response.json()["error"]["message"]


def test_token_endpoint_is_throttled(user, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "auth_token": "2/min",
        },
    }
    client = APIClient()
    codes = [
        client.post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json").status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_openapi_schema_documents_the_accounts_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert set(paths["/api/accounts/me/"]) >= {"get", "patch"}
    assert set(paths["/api/accounts/me/exchange-keys/"]) >= {"put", "delete"}
    assert "post" in paths["/api/accounts/token/"]
    assert "get" in paths["/api/accounts/username-availability"]
    me = schema["components"]["schemas"]["MeOutput"]["properties"]
    assert "exchange_keys" in me and "secret_key" not in str(me)


def test_credentials_factory_round_trip():
    credential = ExchangeCredentialFactory()
    assert exchange_credentials_get(user=credential.user) is not None
