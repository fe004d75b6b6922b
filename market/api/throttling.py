"""Per-client rate limit of the public market-data API (user id when logged in, else IP)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class MarketDataThrottle(SimpleRateThrottle):
    scope = "market"

    def get_rate(self) -> str:
        return settings.MARKET_API_RATE

    def get_cache_key(self, request, view) -> str:  # noqa: ANN001
        if request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
