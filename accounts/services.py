"""Writes of the accounts app: sign-up, profile updates, exchange keys and their encryption-key rotation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from accounts import crypto
from accounts.keycheck import KeyCheckResult, KeyCheckStatus
from accounts.models import ExchangeCredential, User
from accounts.selectors import EMAIL_TAKEN_MESSAGE, USERNAME_TAKEN_MESSAGE, email_is_taken, username_is_taken
from accounts.validators import is_upbit_key, normalize_phone, validate_new_password, validate_username
from core.logging import register_secret

logger = logging.getLogger(__name__)

EMAIL_DOMAINS: tuple[str, ...] = ("naver.com", "gmail.com", "daum.net", "kakao.com", "hanmail.net")
PROFILE_FIELDS = frozenset({"email", "phone", "email_opt_in", "preferred_language"})
UPBIT_KEY_MESSAGE = _("An Upbit key is exactly 40 letters and digits. Copy it again from Upbit.")


def _language_codes() -> set[str]:
    return {code for code, _name in settings.LANGUAGES}


def _add(errors: dict[str, list[Any]], name: str, error: ValidationError | Any) -> None:
    messages = error.messages if isinstance(error, ValidationError) else [error]
    errors.setdefault(name, []).extend(messages)


def _clean_email(value: str, errors: dict[str, list[Any]]) -> str:
    email = (value or "").strip()
    if not email:
        _add(errors, "email", _("Enter your e-mail address."))
        return email
    try:
        validate_email(email)
    except ValidationError:
        _add(errors, "email", _("Enter a valid e-mail address."))
    return email.lower()


def _clean_phone(value: str, errors: dict[str, list[Any]]) -> str:
    try:
        return normalize_phone(value)
    except ValidationError as exc:
        _add(errors, "phone", exc)
        return value


def user_create(
    *,
    username: str,
    email: str,
    phone: str,
    password: str,
    privacy_consent: bool,
    email_opt_in: bool = False,
    preferred_language: str = "en",
) -> User:
    """Create an account; every rule is checked here too, and nothing is written unless all pass.

    Raises ValidationError with a message per field name.
    """
    errors: dict[str, list[Any]] = {}
    username = (username or "").strip()
    try:
        validate_username(username)
    except ValidationError as exc:
        _add(errors, "username", exc)
    else:
        if username_is_taken(username=username):
            _add(errors, "username", USERNAME_TAKEN_MESSAGE)
    email = _clean_email(email, errors)
    if "email" not in errors and email_is_taken(email=email):
        _add(errors, "email", EMAIL_TAKEN_MESSAGE)
    phone = _clean_phone(phone, errors)
    candidate = User(username=username, email=email)
    try:
        validate_new_password(password or "", user=candidate)
    except ValidationError as exc:
        _add(errors, "password", exc)
    if not privacy_consent:
        _add(errors, "privacy_consent", _("You must agree to the collection and use of personal data."))
    if preferred_language not in _language_codes():
        preferred_language = settings.LANGUAGE_CODE
    if errors:
        raise ValidationError(errors)

    user = User(
        username=username,
        email=email,
        phone=phone,
        privacy_consent=True,
        privacy_consent_at=timezone.now(),
        email_opt_in=bool(email_opt_in),
        preferred_language=preferred_language,
    )
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Two sign-ups raced for the same name; the unique index decided.
        raise ValidationError({"username": [USERNAME_TAKEN_MESSAGE]}) from None
    logger.info("user created", extra={"user_id": user.pk})
    return user


def user_update_profile(*, user: User, data: Mapping[str, Any]) -> User:
    """Update the user's own contact details and preferences (email, phone, opt-in, language)."""
    unknown = set(data) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    errors: dict[str, list[Any]] = {}
    changes: dict[str, Any] = {}
    if "email" in data:
        changes["email"] = _clean_email(data["email"], errors)
        if "email" not in errors and email_is_taken(email=changes["email"], exclude_user_id=user.pk):
            _add(errors, "email", EMAIL_TAKEN_MESSAGE)
    if "phone" in data:
        changes["phone"] = _clean_phone(data["phone"], errors)
    if "email_opt_in" in data:
        changes["email_opt_in"] = bool(data["email_opt_in"])
    if "preferred_language" in data:
        if data["preferred_language"] in _language_codes():
            changes["preferred_language"] = data["preferred_language"]
        else:
            _add(errors, "preferred_language", _("Choose English or Korean."))
    if errors:
        raise ValidationError(errors)
    changed = [name for name, value in changes.items() if getattr(user, name) != value]
    if changed:
        for name in changed:
            setattr(user, name, changes[name])
        user.save(update_fields=changed)
    return user


def _hint(access_key: str) -> str:
    return f"{access_key[:4]}…{access_key[-4:]}"


def _clean_keys(access_key: str, secret_key: str) -> tuple[str, str]:
    """The keys stripped, or a ValidationError per field when they cannot be Upbit keys."""
    access_key = (access_key or "").strip()
    secret_key = (secret_key or "").strip()
    # Registered before anything can fail, so even an error path cannot log them.
    register_secret(access_key)
    register_secret(secret_key)
    errors: dict[str, list[Any]] = {}
    if not access_key:
        _add(errors, "access_key", _("Enter your Upbit access key."))
    elif not is_upbit_key(access_key):
        _add(errors, "access_key", UPBIT_KEY_MESSAGE)
    if not secret_key:
        _add(errors, "secret_key", _("Enter your Upbit secret key."))
    elif not is_upbit_key(secret_key):
        _add(errors, "secret_key", UPBIT_KEY_MESSAGE)
    elif secret_key == access_key:
        _add(errors, "secret_key", _("The secret key must differ from the access key."))
    if errors:
        raise ValidationError(errors)
    return access_key, secret_key


def exchange_credential_save(*, user: User, access_key: str, secret_key: str) -> ExchangeCredential:
    """Validate and store the user's Upbit keys, both encrypted; replaces keys saved before."""
    access_key, secret_key = _clean_keys(access_key, secret_key)
    access_encrypted = crypto.encrypt(access_key)
    secret_encrypted = crypto.encrypt(secret_key)
    with transaction.atomic():
        # The row lock serialises this with a concurrent key rotation of the same row.
        credential = ExchangeCredential.objects.select_for_update().filter(user_id=user.pk).first()
        if credential is None:
            credential = ExchangeCredential(user=user)
        credential.exchange = "upbit"
        credential.access_key_encrypted = access_encrypted
        credential.secret_key_encrypted = secret_encrypted
        credential.access_key_hint = _hint(access_key)
        credential.save()
    logger.info("exchange keys saved", extra={"user_id": user.pk, "key_hint": credential.access_key_hint})
    return credential


@dataclass(frozen=True)
class KeySubmitResult:
    check: KeyCheckResult
    credential: ExchangeCredential | None  # None: not stored (the check failed and the user did not confirm)


def exchange_credential_check(*, access_key: str, secret_key: str) -> KeyCheckResult:
    """Ask the exchange whether the keys work, through the checker a higher app registers in
    settings.EXCHANGE_KEY_CHECK (a dotted path to ``callable(*, access_key, secret_key) -> KeyCheckResult``;
    the market app makes a read-only Upbit call). Without one nothing can be asked: UNREACHABLE."""
    if not settings.EXCHANGE_KEY_CHECK:
        return KeyCheckResult(KeyCheckStatus.UNREACHABLE)
    checker = import_string(settings.EXCHANGE_KEY_CHECK)
    return checker(access_key=access_key, secret_key=secret_key)


def exchange_credential_submit(
    *, user: User, access_key: str, secret_key: str, save_anyway: bool = False
) -> KeySubmitResult:
    """Check the keys with the exchange, then store them: at once when they work, otherwise only when the
    user confirmed (``save_anyway``) after being told why they were not accepted."""
    access_key, secret_key = _clean_keys(access_key, secret_key)
    check = exchange_credential_check(access_key=access_key, secret_key=secret_key)
    logger.info("exchange keys checked", extra={"user_id": user.pk, "key_check": check.status.value})
    if check.status is not KeyCheckStatus.VALID and not save_anyway:
        return KeySubmitResult(check=check, credential=None)
    credential = exchange_credential_save(user=user, access_key=access_key, secret_key=secret_key)
    return KeySubmitResult(check=check, credential=credential)


def exchange_credential_delete(*, user: User) -> bool:
    """Remove the user's stored keys; True when there were any."""
    deleted, _detail = ExchangeCredential.objects.filter(user_id=user.pk).delete()
    if deleted:
        logger.info("exchange keys deleted", extra={"user_id": user.pk})
    return bool(deleted)


@dataclass
class RotationResult:
    total: int = 0
    rotated: int = 0
    already_current: int = 0
    failed_ids: list[int] = field(default_factory=list)


def encryption_keys_rotate(*, batch_size: int = 200) -> RotationResult:
    """Re-encrypt every stored credential under the primary (first) key of FIELD_ENCRYPTION_KEYS.

    Runs in short batches, each in its own transaction with the rows locked, so the site keeps working
    (every configured key still decrypts) and a concurrent save is never overwritten. Idempotent: rows
    already under the primary key are left alone, so a second run rotates nothing. Rows no configured key
    can decrypt are reported in ``failed_ids`` and left untouched.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    result = RotationResult()
    last_id = 0
    while True:
        ids = list(
            ExchangeCredential.objects.filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        last_id = ids[-1]
        with transaction.atomic():
            rows = ExchangeCredential.objects.select_for_update().filter(pk__in=ids).order_by("pk")
            for credential in rows:
                result.total += 1
                tokens = (credential.access_key_encrypted, credential.secret_key_encrypted)
                if all(crypto.is_current(token) for token in tokens):
                    result.already_current += 1
                    continue
                try:
                    access, secret = (crypto.rotate(token) for token in tokens)
                except crypto.DecryptionError:
                    result.failed_ids.append(credential.pk)
                    logger.error(
                        "exchange credential cannot be decrypted", extra={"credential_id": credential.pk}
                    )
                    continue
                # update() keeps updated_at: rotation is not a change the user made.
                ExchangeCredential.objects.filter(pk=credential.pk).update(
                    access_key_encrypted=access, secret_key_encrypted=secret
                )
                result.rotated += 1
    logger.info(
        "encryption key rotation finished",
        extra={"total": result.total, "rotated": result.rotated, "failed": len(result.failed_ids)},
    )
    return result
