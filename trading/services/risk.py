"""Risk controls: the per-user daily loss limit and the global kill switch."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import ApplicationError
from trading.hooks import auto_trading_halted_notify
from trading.models import TradingProfile, TradingSwitch
from trading.services.profiles import auto_trading_halt

logger = logging.getLogger(__name__)


def daily_loss_check(*, user: Any) -> bool:
    """Halt auto-trading (and tell the user, over the socket and by e-mail) when today's P&L reached
    minus the user's daily loss limit. Returns True when it halted now."""
    from trading.selectors import portfolio_get

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


def kill_switch_engage(*, by: Any | None = None, reason: str = "") -> dict[str, int]:
    """Stop all trading: refuse new orders, halt every user's auto-trading, cancel every open order."""
    with transaction.atomic():
        switch, _created = TradingSwitch.objects.select_for_update().get_or_create(pk=1)
        switch.engaged = True
        switch.reason = (reason or str(gettext_lazy("Engaged by an operator")))[:200]
        switch.engaged_at = timezone.now()
        switch.engaged_by = by if getattr(by, "pk", None) else None
        switch.save()
    halted_reason = str(gettext_lazy("Kill switch engaged by the operators."))
    for profile in TradingProfile.objects.filter(auto_trading_halted=False).select_related("user"):
        auto_trading_halt(user=profile.user, reason=halted_reason)
    auto_trading_halted_notify(user=None, reason=halted_reason)
    from trading.services.orders import orders_cancel_all

    counts = orders_cancel_all()
    logger.warning("kill switch engaged: %s", counts)
    return counts


def kill_switch_release(*, by: Any | None = None) -> None:
    """Accept orders again. Auto-trading stays halted until each user restarts it."""
    switch, _created = TradingSwitch.objects.get_or_create(pk=1)
    switch.engaged = False
    switch.engaged_by = by if getattr(by, "pk", None) else None
    switch.save()


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
