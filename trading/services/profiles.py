"""Trading profile writes: mode switch (paper <-> live with explicit confirmation), risk limits, the
auto-trading halt flag."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.errors import ValidationFailed
from trading import errors
from trading.hooks import auto_trading_halted_notify
from trading.models import TradingMode, TradingProfile
from trading.services.realtime import user_event_publish

LIVE_CONFIRMATION_TEXT = "LIVE"


def trading_profile_ensure(*, user: Any) -> TradingProfile:
    """The user's profile, created on first use: paper mode; the daily report follows the e-mail
    notifications choice made at sign-up."""
    profile, _created = TradingProfile.objects.get_or_create(
        user=user, defaults={"daily_report": bool(getattr(user, "email_opt_in", False))}
    )
    return profile


def trading_mode_set(
    *, user: Any, mode: str, confirm: bool = False, confirm_text: str = ""
) -> TradingProfile:
    """Switch mode. Going live needs stored keys that Upbit accepts, ``confirm=True`` and the user re-typing
    ``LIVE``; going back to paper is always allowed. Open orders stay on the exchange they were sent to."""
    if mode not in TradingMode.values:
        raise ValidationFailed(_("Unknown trading mode."), code="invalid_mode")
    profile = trading_profile_ensure(user=user)
    if mode == TradingMode.LIVE and profile.mode != TradingMode.LIVE:
        if not confirm or (confirm_text or "").strip().upper() != LIVE_CONFIRMATION_TEXT:
            raise ValidationFailed(
                _('To trade with real money, confirm and type "%(word)s".')
                % {"word": LIVE_CONFIRMATION_TEXT},
                code="confirmation_required",
            )
        from accounts.selectors import exchange_credential_status

        if not exchange_credential_status(user=user).stored:
            raise errors.KeysMissing()
        from trading.exchanges import exchange_for

        # Prove the keys work before any real order depends on them (one /v1/accounts call).
        exchange_for(user=user, mode=TradingMode.LIVE).balances()
        profile.live_confirmed_at = timezone.now()
    profile.mode = mode
    profile.save(update_fields=["mode", "live_confirmed_at", "updated_at"])
    user_event_publish(user_id=user.pk, kind="mode", data={"mode": profile.mode})
    return profile


def risk_limits_update(
    *,
    user: Any,
    max_order_krw: Decimal | None,
    max_position_krw: Decimal | None,
    daily_loss_limit_krw: Decimal | None,
    daily_report: bool | None = None,
) -> TradingProfile:
    """Set the per-user limits (None = no limit). Limits are positive KRW amounts."""
    for value in (max_order_krw, max_position_krw, daily_loss_limit_krw):
        if value is not None and (not value.is_finite() or value <= 0):
            raise ValidationFailed(_("Risk limits must be positive KRW amounts."), code="invalid_limit")
    profile = trading_profile_ensure(user=user)
    profile.max_order_krw = max_order_krw
    profile.max_position_krw = max_position_krw
    profile.daily_loss_limit_krw = daily_loss_limit_krw
    if daily_report is not None:
        profile.daily_report = daily_report
    profile.save()
    return profile


def auto_trading_halt(*, user: Any, reason: str) -> TradingProfile:
    """Stop auto-trading for a user (daily loss limit, kill switch); idempotent; tells the user."""
    with transaction.atomic():
        profile = TradingProfile.objects.select_for_update().get(pk=trading_profile_ensure(user=user).pk)
        if profile.auto_trading_halted:
            return profile
        profile.auto_trading_halted = True
        profile.halted_reason = reason[:200]
        profile.halted_at = timezone.now()
        profile.save(update_fields=["auto_trading_halted", "halted_reason", "halted_at", "updated_at"])
        user_event_publish(
            user_id=user.pk, kind="auto_trading_halted", data={"reason": profile.halted_reason}
        )
    auto_trading_halted_notify(user=user, reason=reason)
    return profile


def auto_trading_resume(*, user: Any) -> TradingProfile:
    """Clear the halt flag (the user acknowledges; the kill switch must be off)."""
    from trading.selectors import kill_switch_engaged

    if kill_switch_engaged():
        raise errors.TradingHalted(_("Trading is stopped by the operators (kill switch)."))
    profile = trading_profile_ensure(user=user)
    profile.auto_trading_halted = False
    profile.halted_reason = ""
    profile.halted_at = None
    profile.save(update_fields=["auto_trading_halted", "halted_reason", "halted_at", "updated_at"])
    return profile
