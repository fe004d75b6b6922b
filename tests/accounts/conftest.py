"""Fixtures of the accounts tests: clients logged in as fresh users, throttle counters reset per test."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from tests.accounts.factories import UserFactory

_THROTTLE_SCOPES = ("username_check", "auth_token")


@pytest.fixture(autouse=True)
def _reset_throttles() -> None:
    # Only our own keys: in CI the cache is the shared Redis, so never clear() it.
    cache.delete_many([f"throttle_{scope}_127.0.0.1" for scope in _THROTTLE_SCOPES])


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
