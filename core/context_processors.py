"""Template context shared by every page: the simulated-market banner flag and its planted signal."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "MARKET_SIMULATED": settings.MARKET_SIMULATED,
        "SIM_SIGNAL_STRENGTH": settings.SIM_SIGNAL_STRENGTH if settings.MARKET_SIMULATED else 0.0,
    }
