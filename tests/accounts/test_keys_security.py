"""Exchange keys: ciphertext at rest, masked everywhere they are shown, never in logs."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts import crypto
from accounts.errors import ExchangeKeysUnreadable
from accounts.models import ExchangeCredential
from accounts.selectors import exchange_credential_status, exchange_credentials_get
from accounts.services import exchange_credential_save
from core.logging import RedactSecretsFilter
from tests.accounts.factories import ExchangeCredentialFactory, UserFactory, upbit_key

pytestmark = pytest.mark.django_db


def _raw_columns(user_id: int) -> tuple[str, str]:
    table = ExchangeCredential._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT access_key_encrypted, secret_key_encrypted FROM {table} WHERE user_id = %s", [user_id]
        )
        return cursor.fetchone()


def test_raw_database_columns_hold_ciphertext_not_plaintext(user):
    access, secret = upbit_key(), upbit_key()
    exchange_credential_save(user=user, access_key=access, secret_key=secret)
    raw_access, raw_secret = _raw_columns(user.pk)
    for raw, plain in ((raw_access, access), (raw_secret, secret)):
        assert plain not in raw
        assert raw.startswith("gAAAA")  # a Fernet token
        assert crypto.decrypt(raw) == plain
    assert raw_access != raw_secret


def test_selectors_return_plaintext_for_the_server_and_only_status_for_display(user):
    assert exchange_credentials_get(user=user) is None
    assert exchange_credential_status(user=user).stored is False
    credential = ExchangeCredentialFactory(user=user)
    access, secret = exchange_credentials_get(user=user)
    status = exchange_credential_status(user=user)
    assert status.stored and status.access_key_hint == f"{access[:4]}…{access[-4:]}"
    assert secret not in repr(status) and access not in repr(status)
    assert credential.access_key_hint == status.access_key_hint


def test_unreadable_keys_raise_a_clear_error(user, settings):
    ExchangeCredentialFactory(user=user)
    settings.FIELD_ENCRYPTION_KEYS = ["bm90LXRoZS1zYW1lLWtleS1ub3QtdGhlLXNhbWUta2U="]
    with pytest.raises(ExchangeKeysUnreadable):
        exchange_credentials_get(user=user)


def test_api_responses_show_only_the_hint(user):
    access, secret = upbit_key(), upbit_key()
    api = APIClient()
    api.force_authenticate(user)
    put = api.put(
        "/api/accounts/me/exchange-keys/", {"access_key": access, "secret_key": secret}, format="json"
    )
    get = api.get("/api/accounts/me/")
    for response in (put, get):
        text = response.content.decode()
        assert response.status_code == 200
        assert access not in text and secret not in text
        assert "encrypted" not in text
        assert f"{access[:4]}…{access[-4:]}" in text


def _assert_not_logged(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    assert caplog.records, "the test must capture something to be meaningful"
    for record in caplog.records:
        rendered = record.getMessage() + " " + repr(record.__dict__)
        for secret in secrets:
            assert secret not in rendered


def test_save_path_never_logs_the_keys(user, caplog):
    access, secret = upbit_key(), upbit_key()
    with caplog.at_level(logging.DEBUG):
        exchange_credential_save(user=user, access_key=access, secret_key=secret)
        exchange_credentials_get(user=user)
        with pytest.raises(Exception):  # noqa: B017 - the invalid path must not log either
            exchange_credential_save(user=user, access_key=access + "!", secret_key=secret)
    _assert_not_logged(caplog, access, secret)


def test_full_request_cycle_with_debug_logging_never_logs_the_keys(client: Client, user, caplog, settings):
    settings.DEBUG = True  # makes Django log every SQL query with its parameters
    client.force_login(user)
    access, secret = upbit_key(), upbit_key()
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="django.db.backends"):
        client.post("/profile", {"access_key": access, "secret_key": secret})
        client.post("/profile", {"access_key": access[:-1], "secret_key": secret})  # error path, 400
        client.get("/profile")
        api = APIClient()
        api.force_authenticate(user)
        api.put(
            "/api/accounts/me/exchange-keys/", {"access_key": access, "secret_key": secret}, format="json"
        )
        api.put(
            "/api/accounts/me/exchange-keys/", {"access_key": access, "secret_key": "short"}, format="json"
        )
        api.get("/api/accounts/me/")
    assert any(r.name == "django.db.backends" for r in caplog.records)
    _assert_not_logged(caplog, access, secret)


def test_keys_that_reach_a_log_line_by_accident_are_redacted(user):
    access, secret = upbit_key(), upbit_key()
    exchange_credential_save(user=user, access_key=access, secret_key=secret)
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "upbit said %s for %s", (secret, access), None
    )
    RedactSecretsFilter().filter(record)
    assert secret not in record.getMessage() and access not in record.getMessage()


def test_keys_of_one_user_are_independent_of_another():
    first, second = ExchangeCredentialFactory(), ExchangeCredentialFactory()
    assert exchange_credentials_get(user=first.user) != exchange_credentials_get(user=second.user)
    assert exchange_credentials_get(user=UserFactory()) is None
