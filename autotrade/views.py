"""Auto-trading's part of the /trade page (``settings.TRADE_PAGE_CONFIG``): its API endpoints and the
threshold slider's range and the user's kept choice."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from autotrade.selectors import MAX_THRESHOLD, autotrade_threshold_get

_ENDPOINTS = {
    "auto": "autotrade-api:auto-sessions",
    "auto_start": "autotrade-api:auto-start",
    "auto_change": "autotrade-api:auto-change",
    "auto_stop": "autotrade-api:auto-stop",
    "auto_decisions": "autotrade-api:auto-decisions",
}


def trade_page_config(*, user: Any) -> dict[str, Any]:
    """The page's auto-trading configuration; the threshold in percent (the range the server accepts)."""
    return {
        "api": {name: reverse(url_name) for name, url_name in _ENDPOINTS.items()},
        "threshold": {
            "min": 0,
            "max": float(MAX_THRESHOLD * 100),
            "step": 0.01,
            "default": float(autotrade_threshold_get(user=user) * 100),
        },
    }
