"""What a check of exchange keys found, and how to say it: shared by the service, the page and the API."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class KeyCheckStatus(StrEnum):
    VALID = "valid"  # the exchange answered a read-only call made with the keys
    INVALID = "invalid"  # the exchange refused them (unknown, wrong secret, expired, IP not allowed, ...)
    UNREACHABLE = "unreachable"  # the exchange could not be asked: nothing is known about the keys


@dataclass(frozen=True)
class KeyCheckResult:
    status: KeyCheckStatus
    error_name: str = ""  # the exchange's error name when it refused them, e.g. "invalid_access_key"


# Why Upbit refused keys, by its error name (shared/upbit-api.md §2.4); anything else gets the general line.
KEY_REFUSAL_REASONS = {
    "invalid_access_key": _("Upbit does not know this access key."),
    "jwt_verification": _("The secret key does not belong to this access key."),
    "expired_access_key": _("These keys have expired. Issue new ones on Upbit."),
    "no_authorization_ip": _("These keys are not allowed from this server's IP address."),
    "no_authorization_i_p": _("These keys are not allowed from this server's IP address."),
    "out_of_scope": _("These keys lack the permission to view your assets."),
}


def key_check_reason(check: KeyCheckResult) -> str:
    """One sentence a user understands, with Upbit's error name for support; never the keys."""
    if check.status is KeyCheckStatus.UNREACHABLE:
        return gettext("Upbit could not be reached, so the keys could not be verified.")
    reason = KEY_REFUSAL_REASONS.get(check.error_name, _("Upbit did not accept these keys."))
    return f"{reason} ({check.error_name})" if check.error_name else str(reason)
