"""HTML of the trading app: the profile page sections (holdings, "send to my e-mail") and the form post
behind that button. The /trade dashboard lives with the UI work."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from trading import selectors, services


def profile_holdings_section(request: HttpRequest) -> SafeString:
    """Holdings table for /profile: currency, quantity, average buy price (and the account's mode)."""
    portfolio, error = None, None
    try:
        portfolio = selectors.portfolio_get(user=request.user)
    except ApplicationError as exc:
        error = exc.message
    mode = selectors.profile_get(user=request.user).mode
    return SafeString(
        render_to_string(
            "trading/profile_holdings.html",
            {"portfolio": portfolio, "error": error, "mode": mode},
            request=request,
        )
    )


def profile_report_section(request: HttpRequest) -> SafeString:
    """The "send to my e-mail" button (a CSRF-protected form post)."""
    return SafeString(
        render_to_string("trading/profile_report.html", {"email": request.user.email}, request=request)
    )


@login_required
@require_POST
def report_send_view(request: HttpRequest) -> HttpResponseRedirect:
    try:
        sent_to = services.report_send(user=request.user)
    except ApplicationError as exc:
        messages.error(request, str(exc.message))
    else:
        messages.success(request, _("Your assets report was sent to %(email)s.") % {"email": sent_to})
    return HttpResponseRedirect("/profile")
