"""How numbers written as text are read everywhere (API fields, admin forms): ASCII digits with an optional
point, nothing else ('+5000', '５０００', '٥٠٠٠', '1e3', '5,000' are refused, not read as 5000)."""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _

PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
SIGNED_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

# The messages of a refused number: one wording for the API's fields and the admin's form fields.
DECIMAL_MESSAGES = {
    "ascii": _("Write the number with the digits 0-9 and an optional decimal point only."),
    "unsigned": _("Write the amount without a sign: digits 0-9 and an optional decimal point only."),
}


def decimal_text_refusal(text: str, *, signed: bool) -> str | None:
    """Why ``text`` (stripped) is not a number by this rule: ``"unsigned"`` (a '-' where none may be),
    ``"ascii"`` (anything else outside the rule), or ``None`` when it is one."""
    if not signed and text.startswith("-") and PLAIN_DECIMAL.fullmatch(text[1:]):
        return "unsigned"
    if not (SIGNED_DECIMAL if signed else PLAIN_DECIMAL).fullmatch(text):
        return "ascii"
    return None
