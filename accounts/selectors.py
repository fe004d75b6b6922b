"""Reads of the accounts app: username availability, exchange-key status and (server-side only) the keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts import crypto
from accounts.errors import ExchangeKeysUnreadable
from accounts.models import ExchangeCredential, User
from accounts.validators import USERNAME_MESSAGE, USERNAME_RE
from core.logging import register_secret

USERNAME_TAKEN_MESSAGE = _("This username is already taken.")
EMAIL_TAKEN_MESSAGE = _("Another account already uses this e-mail address.")


@dataclass(frozen=True)
class UsernameAvailability:
    username: str
    available: bool
    reason: str  # "available" | "invalid" | "taken"
    message: str | Promise


@dataclass(frozen=True)
class ExchangeCredentialStatus:
    stored: bool
    exchange: str | None = None
    access_key_hint: str | None = None
    updated_at: datetime | None = None


def username_is_taken(*, username: str) -> bool:
    # Case-insensitive: "Alice" and "alice" would be indistinguishable to people reading them.
    return User.objects.filter(username__iexact=username).exists()


def email_is_taken(*, email: str, exclude_user_id: int | None = None) -> bool:
    # Case-insensitive: mail systems treat the two spellings as one mailbox in practice.
    users = User.objects.filter(email__iexact=(email or "").strip())
    if exclude_user_id is not None:
        users = users.exclude(pk=exclude_user_id)
    return users.exists()


def username_availability(*, username: str) -> UsernameAvailability:
    username = (username or "").strip()
    if not USERNAME_RE.fullmatch(username):
        return UsernameAvailability(username, False, "invalid", USERNAME_MESSAGE)
    if username_is_taken(username=username):
        return UsernameAvailability(username, False, "taken", USERNAME_TAKEN_MESSAGE)
    return UsernameAvailability(username, True, "available", _("This username is available."))


def exchange_credential_status(*, user: User) -> ExchangeCredentialStatus:
    """What may be shown to the user about their keys: whether stored, a partial access key, when saved."""
    credential = (
        ExchangeCredential.objects.filter(user_id=user.pk)
        .only("exchange", "access_key_hint", "updated_at")
        .first()
    )
    if credential is None:
        return ExchangeCredentialStatus(stored=False)
    return ExchangeCredentialStatus(
        stored=True,
        exchange=credential.exchange,
        access_key_hint=credential.access_key_hint,
        updated_at=credential.updated_at,
    )


def exchange_credentials_get(*, user: User) -> tuple[str, str] | None:
    """The decrypted ``(access_key, secret_key)`` for server-side exchange calls; never for rendering.

    Returns None when the user has no keys; raises ExchangeKeysUnreadable when they cannot be decrypted.
    """
    credential = (
        ExchangeCredential.objects.filter(user_id=user.pk)
        .only("access_key_encrypted", "secret_key_encrypted")
        .first()
    )
    if credential is None:
        return None
    try:
        access_key = crypto.decrypt(credential.access_key_encrypted)
        secret_key = crypto.decrypt(credential.secret_key_encrypted)
    except crypto.DecryptionError:
        raise ExchangeKeysUnreadable() from None
    # Anything that later slips into a log line (an exception, a request dump) is redacted.
    register_secret(access_key)
    register_secret(secret_key)
    return access_key, secret_key
