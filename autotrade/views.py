"""Auto-trading's part of the /trade page: its panel (``settings.TRADE_PAGE_PANELS``) and its client
configuration (``settings.TRADE_PAGE_CONFIG``): API endpoints, the strings the panel's script shows, the
threshold slider's range and the user's kept choice."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from autotrade.selectors import MAX_THRESHOLD, autotrade_threshold_get

_ENDPOINTS = {
    "auto": "autotrade-api:auto-sessions",
    "auto_start": "autotrade-api:auto-start",
    "auto_change": "autotrade-api:auto-change",
    "auto_stop": "autotrade-api:auto-stop",
    "auto_decisions": "autotrade-api:auto-decisions",
}

# Every string the panel's script shows, translated on the server for the page's language (msgids in locale/).
STRINGS: dict[str, Any] = {
    "auto_started": _("Auto-trading started."),
    "auto_stopped": _("Auto-trading stopped."),
    "threshold_applied": _("Profit threshold applied: {v}."),
    "no_decisions": _("No decisions yet in this session."),
    "action_buy": _("buy"),
    "action_sell": _("sell"),
    "action_hold": _("hold"),
    "action_skip": _("skip"),
    "edge": _("needs beyond ±{v}"),
    "reason_below_threshold": _("prediction within threshold + costs"),
    "reason_signal_buy": _("buy signal"),
    "reason_signal_sell": _("sell signal"),
    "reason_horizon_exit": _("horizon passed, no longer above threshold + costs"),
    "reason_no_position": _("sell signal, nothing to sell"),
    "reason_under_min_total": _("position below the minimum order"),
    "reason_cooldown": _("cool-down after the last order"),
    "reason_position_limit": _("position limit reached"),
    "reason_stop_loss": _("stop loss"),
    "reason_order_in_flight": _("previous order still open"),
    "reason_halted": _("auto-trading halted"),
    "reason_kill_switch": _("trading stopped by the operators"),
}


def trade_panel(request: HttpRequest) -> str:
    """The auto-trading panel of the /trade page (threshold, order size, start/stop, model, decision log)."""
    return render_to_string("autotrade/trade_panel.html", request=request)


def trade_page_config(*, user: Any) -> dict[str, Any]:
    """The page's auto-trading configuration; the threshold in percent (the range the server accepts)."""
    return {
        "api": {name: reverse(url_name) for name, url_name in _ENDPOINTS.items()},
        "strings": {k: str(v) for k, v in STRINGS.items()},
        "threshold": {
            "min": 0,
            "max": float(MAX_THRESHOLD * 100),
            "step": 0.01,
            "default": float(autotrade_threshold_get(user=user) * 100),
        },
    }
