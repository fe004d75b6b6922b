"""Template context shared by every page: the simulated-market banner flag."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {"MARKET_SIMULATED": settings.MARKET_SIMULATED}
