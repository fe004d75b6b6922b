"""rotate_encryption_keys: re-encrypts under the new primary key in batches; old key can then be dropped."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from accounts import crypto
from accounts.models import ExchangeCredential
from accounts.selectors import exchange_credentials_get
from tests.accounts.factories import ExchangeCredentialFactory

pytestmark = pytest.mark.django_db


def _key() -> str:
    return Fernet.generate_key().decode()


def _run(**options: object) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out, **options)
    return out.getvalue()


def test_rotation_keeps_keys_readable_after_the_old_key_is_dropped(settings):
    old, new = _key(), _key()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    credentials = [ExchangeCredentialFactory() for _ in range(5)]
    plain = {c.user_id: exchange_credentials_get(user=c.user) for c in credentials}
    before = {c.pk: (c.access_key_encrypted, c.updated_at) for c in ExchangeCredential.objects.all()}

    settings.FIELD_ENCRYPTION_KEYS = [new, old]  # step 1: prepend the new key
    # During the rotation the site keeps working: rows under the old key still decrypt.
    assert exchange_credentials_get(user=credentials[0].user) == plain[credentials[0].user_id]
    output = _run(batch_size=2)  # step 2: several batches
    assert "credentials: 5, re-encrypted: 5" in output

    for row in ExchangeCredential.objects.all():
        assert row.access_key_encrypted != before[row.pk][0]
        assert crypto.is_current(row.access_key_encrypted) and crypto.is_current(row.secret_key_encrypted)
        assert row.updated_at == before[row.pk][1]  # rotation is not a user change

    settings.FIELD_ENCRYPTION_KEYS = [new]  # step 3: drop the old key
    for c in credentials:
        assert exchange_credentials_get(user=c.user) == plain[c.user_id]


def test_rotation_is_idempotent(settings):
    old, new = _key(), _key()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    ExchangeCredentialFactory()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert "re-encrypted: 1" in _run()
    tokens = list(ExchangeCredential.objects.values_list("access_key_encrypted", flat=True))
    output = _run()
    assert "re-encrypted: 0, already under the primary key: 1" in output
    assert list(ExchangeCredential.objects.values_list("access_key_encrypted", flat=True)) == tokens


def test_rows_no_key_can_decrypt_are_reported_and_left_alone(settings):
    lost, old, new = _key(), _key(), _key()
    settings.FIELD_ENCRYPTION_KEYS = [lost]
    orphan = ExchangeCredentialFactory()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    good = ExchangeCredentialFactory()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    with pytest.raises(CommandError, match=f"cannot decrypt credential ids {orphan.pk}"):
        _run()
    orphan_row = ExchangeCredential.objects.get(pk=orphan.pk)
    assert orphan_row.access_key_encrypted == orphan.access_key_encrypted
    assert crypto.is_current(ExchangeCredential.objects.get(pk=good.pk).access_key_encrypted)


def test_help_documents_the_procedure():
    from accounts.management.commands.rotate_encryption_keys import Command

    text = Command.help
    for phrase in ("PREPEND", "rotate_encryption_keys", "DROP the old key", "idempotent"):
        assert phrase in text
