"""Risk controls: the per-user daily loss limit (the global kill switch is in ``killswitch``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.utils import translation
from django.utils.translation import gettext as _

from core.errors import ApplicationError
from trading.models import TradingProfile
from trading.selectors import portfolio_get
from trading.services.profiles import auto_trading_halt

logger = logging.getLogger(__name__)


def daily_loss_check(*, user: Any) -> bool:
    """Halt auto-trading (and tell the user, over the socket and by e-mail) when today's P&L reached
    minus the user's daily loss limit. Returns True when it halted now."""
    profile = TradingProfile.objects.filter(user=user).first()
    if profile is None or profile.daily_loss_limit_krw is None or profile.auto_trading_halted:
        return False
    try:
        pnl_today = portfolio_get(user=user).pnl_today
    except ApplicationError:
        return False  # no prices right now: the periodic check runs again
    if pnl_today is None or pnl_today > -profile.daily_loss_limit_krw:
        return False
    with translation.override(getattr(user, "preferred_language", None) or settings.LANGUAGE_CODE):
        reason = _("Daily loss limit reached: today's P&L is %(pnl)s KRW (limit %(limit)s KRW).") % {
            "pnl": f"{pnl_today:,.0f}",
            "limit": f"{profile.daily_loss_limit_krw:,.0f}",
        }
        auto_trading_halt(user=user, reason=reason)
        if user.email:
            try:
                send_mail(
                    subject=_("OBservator: auto-trading stopped"),
                    message=reason + "\n\n" + _("Auto-trading stays off until you start it again."),
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    recipient_list=[user.email],
                )
            except Exception:  # noqa: BLE001 - the halt itself already happened; mail is a courtesy
                logger.warning("loss-limit notice to user %s not sent", user.pk, exc_info=True)
    return True


def daily_loss_checks_all() -> int:
    """The periodic check for everyone with a daily loss limit whose auto-trading still runs."""
    halted = 0
    for profile in TradingProfile.objects.filter(
        daily_loss_limit_krw__isnull=False, auto_trading_halted=False
    ).select_related("user"):
        try:
            halted += int(daily_loss_check(user=profile.user))
        except ApplicationError:
            continue
    return halted
