"""Fixtures of the accounts tests: clients logged in as fresh users, throttle counters reset per test."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from accounts.keycheck import KeyCheckResult, KeyCheckStatus
from tests.accounts.factories import UserFactory

_THROTTLE_SCOPES = ("username_check", "auth_token")


@pytest.fixture(autouse=True)
def _reset_throttles() -> None:
    # Only our own keys: in CI the cache is the shared Redis, so never clear() it.
    cache.delete_many([f"throttle_{scope}_127.0.0.1" for scope in _THROTTLE_SCOPES])


def accept_keys(*, access_key: str, secret_key: str) -> KeyCheckResult:
    return KeyCheckResult(KeyCheckStatus.VALID)


@pytest.fixture(autouse=True)
def _keys_check_accepts(settings) -> None:  # noqa: ANN001
    """The profile tests store keys without asking Upbit (tests must not reach it); test_key_check.py
    puts the real check back, against the local simulator."""
    settings.EXCHANGE_KEY_CHECK = "tests.accounts.conftest.accept_keys"


@pytest.fixture
def user(db):  # noqa: ANN001, ANN201
    return UserFactory()


@pytest.fixture
def other_user(db):  # noqa: ANN001, ANN201
    return UserFactory()


@pytest.fixture
def logged_in(client: Client, user) -> Client:  # noqa: ANN001
    client.force_login(user)
    return client


@pytest.fixture
def api(user) -> APIClient:  # noqa: ANN001
    api_client = APIClient()
    api_client.force_authenticate(user)
    return api_client
