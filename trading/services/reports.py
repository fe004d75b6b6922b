"""The e-mail report ("send to my e-mail"): holdings and P&L as HTML + text, in the user's language."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import ApplicationError, ServiceUnavailable, ValidationFailed
from trading.models import TradingProfile
from trading.selectors import portfolio_get

logger = logging.getLogger(__name__)


def report_render(*, user: Any) -> tuple[str, str, str]:
    """(subject, text, html) of the user's current report."""
    portfolio = portfolio_get(user=user)
    context = {"user": user, "portfolio": portfolio, "generated_at": timezone.localtime()}
    subject = _("OBservator: your assets on %(date)s") % {"date": timezone.localdate().isoformat()}
    text = render_to_string("trading/email/report.txt", context)
    html = render_to_string("trading/email/report.html", context)
    return subject, text, html


def report_send(*, user: Any) -> str:
    """Send the report to the user's address over the configured SMTP server; returns the address."""
    if not user.email:
        raise ValidationFailed(gettext_lazy("Add an e-mail address to your profile first."), code="no_email")
    with translation.override(getattr(user, "preferred_language", None) or settings.LANGUAGE_CODE):
        subject, text, html = report_render(user=user)
        message = EmailMultiAlternatives(
            subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[user.email]
        )
        message.attach_alternative(html, "text/html")
        try:
            message.send(fail_silently=False)
        except OSError as exc:  # SMTP server down / refused
            logger.warning("report mail to user %s failed: %s", user.pk, type(exc).__name__)
            raise ServiceUnavailable(
                gettext_lazy("The e-mail could not be sent right now. Try again later."),
                code="mail_unavailable",
            ) from exc
    TradingProfile.objects.filter(user=user).update(last_report_sent_at=timezone.now())
    return user.email


def reports_send_daily() -> dict[str, int]:
    """Send the daily report to every opted-in user with an address (one failure does not stop the rest)."""
    counts = {"sent": 0, "failed": 0}
    profiles = TradingProfile.objects.filter(daily_report=True).select_related("user").exclude(user__email="")
    for profile in profiles:
        if not profile.user.is_active:
            continue
        try:
            report_send(user=profile.user)
            counts["sent"] += 1
        except ApplicationError as exc:
            logger.warning("daily report for user %s failed: %s", profile.user_id, exc.code)
            counts["failed"] += 1
    return counts
