"""One user can never read or change another user's profile or keys, through any route."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.selectors import exchange_credentials_get
from tests.accounts.factories import ExchangeCredentialFactory, UserFactory, upbit_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim():
    credential = ExchangeCredentialFactory(user=UserFactory(email="victim@naver.com", phone="010-1111-1111"))
    return credential.user


@pytest.fixture
def attacker():
    return UserFactory()


def _snapshot(user):
    user.refresh_from_db()
    return (
        user.username,
        user.email,
        user.phone,
        user.email_opt_in,
        user.preferred_language,
        exchange_credentials_get(user=user),
    )


def test_api_routes_only_ever_touch_the_caller(victim, attacker):
    before = _snapshot(victim)
    api = APIClient()
    api.force_authenticate(attacker)
    pk = victim.pk

    body = api.get("/api/accounts/me/", {"id": pk, "user": pk, "username": victim.username}).json()
    assert body["id"] == attacker.pk and victim.email not in str(body)
    api.patch(
        f"/api/accounts/me/?user={pk}", {"id": pk, "user": pk, "email": "pwned@evil.com"}, format="json"
    )
    api.put(
        f"/api/accounts/me/exchange-keys/?user={pk}",
        {"user": pk, "access_key": upbit_key(), "secret_key": upbit_key()},
        format="json",
    )
    api.delete(f"/api/accounts/me/exchange-keys/?user={pk}", {"user": pk}, format="json")
    for path in (
        f"/api/accounts/{pk}/",
        f"/api/accounts/me/{pk}/",
        f"/api/accounts/users/{pk}/",
        f"/api/accounts/{pk}/exchange-keys/",
    ):
        assert api.get(path).status_code == 404
        assert api.patch(path, {"email": "pwned@evil.com"}, format="json").status_code == 404
    assert _snapshot(victim) == before
    attacker.refresh_from_db()
    assert attacker.email == "pwned@evil.com"  # the change landed on the caller's own profile


def test_page_routes_only_ever_touch_the_caller(victim, attacker):
    before = _snapshot(victim)
    client = Client()
    client.force_login(attacker)
    html = client.get(f"/profile?user={victim.pk}").content.decode()
    assert victim.email not in html and victim.username not in html
    client.post(
        "/profile",
        {"user": victim.pk, "user_id": victim.pk, "access_key": upbit_key(), "secret_key": upbit_key()},
    )
    client.post("/profile/settings", {"user": victim.pk, "email": "pwned@evil.com", "phone": "010-2222-2222"})
    client.post("/profile/keys/delete", {"user": victim.pk, "user_id": victim.pk})
    assert _snapshot(victim) == before


def test_token_cannot_be_obtained_with_another_users_name(victim, attacker):
    response = APIClient().post(
        "/api/accounts/token/", {"username": victim.username, "password": "Sup3r!Secret!"}, format="json"
    )
    assert response.status_code == 400
