"""Account pages (signup, login, home, profile) — filled in by the accounts work."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _


def lockout_response(request: HttpRequest, credentials: Any = None, *args: Any, **kwargs: Any) -> HttpResponse:
    return HttpResponse(_("Too many failed login attempts. Try again in 15 minutes."), status=429)
