"""Account errors the user can act on (mapped to HTTP by core.api like every ApplicationError)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from accounts.keycheck import KeyCheckResult, KeyCheckStatus, key_check_reason
from core.errors import ApplicationError


class ExchangeKeysUnreadable(ApplicationError):
    """Stored keys exist but no configured encryption key decrypts them (an old key was dropped too early)."""

    status_code = 409
    code = "exchange_keys_unreadable"

    def __init__(self) -> None:
        super().__init__(_("Your saved Upbit keys can no longer be read. Please save them again."))


class ExchangeKeysNotAccepted(ApplicationError):
    """Upbit refused the keys (400), or could not be asked (503); ``save_anyway`` stores them regardless."""

    def __init__(self, check: KeyCheckResult) -> None:
        refused = check.status is KeyCheckStatus.INVALID
        self.status_code = 400 if refused else 503
        super().__init__(
            key_check_reason(check),
            code="exchange_keys_refused" if refused else "exchange_keys_unverified",
            extra={"key_check": check.status.value, "upbit_error": check.error_name, "saved": False},
        )
