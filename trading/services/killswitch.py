"""The operators' global kill switch: refuse new orders, halt every user's auto-trading, cancel every open
order; released, orders are accepted again."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from trading.hooks import auto_trading_halted_notify
from trading.models import TradingProfile, TradingSwitch
from trading.services.orders import orders_cancel_all
from trading.services.profiles import auto_trading_halt

logger = logging.getLogger(__name__)


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
    counts = orders_cancel_all()
    logger.warning("kill switch engaged: %s", counts)
    return counts


def kill_switch_release(*, by: Any | None = None) -> None:
    """Accept orders again. Auto-trading stays halted until each user restarts it."""
    switch, _created = TradingSwitch.objects.get_or_create(pk=1)
    switch.engaged = False
    switch.engaged_by = by if getattr(by, "pk", None) else None
    switch.save()
