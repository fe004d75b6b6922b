"""Account errors the user can act on (mapped to HTTP by core.api like every ApplicationError)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError


class ExchangeKeysUnreadable(ApplicationError):
    """Stored keys exist but no configured encryption key decrypts them (an old key was dropped too early)."""

    status_code = 409
    code = "exchange_keys_unreadable"

    def __init__(self) -> None:
        super().__init__(_("Your saved Upbit keys can no longer be read. Please save them again."))
