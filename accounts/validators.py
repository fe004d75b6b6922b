"""Password policy of the original product: 8-16 characters including a special character."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

SPECIAL = re.compile(r"[^A-Za-z0-9]")


class PasswordPolicyValidator:
    def validate(self, password: str, user: Any = None) -> None:
        if not 8 <= len(password) <= 16:
            raise ValidationError(_("Password must be 8 to 16 characters long."), code="password_length")
        if not SPECIAL.search(password):
            raise ValidationError(
                _("Password must include at least one special character."), code="password_no_special"
            )

    def get_help_text(self) -> str:
        return _("8 to 16 characters, including at least one special character.")
