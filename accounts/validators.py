"""Input rules of the original product: username, phone, password policy and Upbit key format."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

SPECIAL = re.compile(r"[^A-Za-z0-9]")
USERNAME_RE = re.compile(r"^[A-Za-z0-9]{4,20}$")
PHONE_RE = re.compile(r"^010-?(\d{4})-?(\d{4})$")
# Upbit issues access and secret keys as 40-character alphanumeric strings.
UPBIT_KEY_RE = re.compile(r"^[A-Za-z0-9]{40}$")

USERNAME_MESSAGE = gettext_lazy("Use 4 to 20 letters or digits, without spaces or special characters.")
PHONE_MESSAGE = gettext_lazy("Enter a mobile number in the form 010-1234-5678.")


def validate_username(value: str) -> None:
    if not USERNAME_RE.fullmatch(value or ""):
        raise ValidationError(USERNAME_MESSAGE, code="username_format")


def normalize_phone(value: str) -> str:
    """Return ``010-XXXX-XXXX`` for a valid mobile number (hyphens optional), or raise ValidationError."""
    match = PHONE_RE.fullmatch((value or "").strip())
    if not match:
        raise ValidationError(PHONE_MESSAGE, code="phone_format")
    return f"010-{match.group(1)}-{match.group(2)}"


def is_upbit_key(value: str) -> bool:
    return bool(UPBIT_KEY_RE.fullmatch(value or ""))


class PasswordPolicyValidator:
    """8-16 characters including a special character (in AUTH_PASSWORD_VALIDATORS)."""

    def validate(self, password: str, user: Any = None) -> None:
        if not 8 <= len(password) <= 16:
            raise ValidationError(_("Password must be 8 to 16 characters long."), code="password_length")
        if not SPECIAL.search(password):
            raise ValidationError(
                _("Password must include at least one special character."), code="password_no_special"
            )

    def get_help_text(self) -> str:
        return _("8 to 16 characters, including at least one special character.")


def validate_new_password(password: str, *, user: Any = None) -> None:
    """Check a new password against AUTH_PASSWORD_VALIDATORS, raising with the first failure only.

    The product's own policy (8-16 characters with a special character) is checked first, so a too-short
    password gets that one clear message rather than one per validator that notices it.
    """
    validators = sorted(
        password_validation.get_default_password_validators(),
        key=lambda validator: not isinstance(validator, PasswordPolicyValidator),
    )
    for validator in validators:
        validator.validate(password, user)
