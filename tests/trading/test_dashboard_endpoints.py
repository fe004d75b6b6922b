"""The /trade page's API endpoints are reversed from the URLconf (no hard-coded paths): the same templates as
the routes, and they follow the routes when those move."""

from __future__ import annotations

from typing import Any

from django.urls import clear_url_caches, include, path

from observator.urls import api_patterns
from trading.dashboard import api_endpoints

# This module doubles as a URLconf that mounts the REST API under /v2/ (see the second test).
urlpatterns = [path("v2/", include(api_patterns))]


def test_the_page_gets_url_templates_of_the_installed_routes() -> None:
    api = api_endpoints()
    assert api["markets"] == "/api/market/markets/"
    assert api["ticker"] == "/api/market/{code}/ticker/"
    assert api["order_cancel"] == "/api/trading/orders/{id}/cancel/"
    assert api["scheduled_cancel"] == "/api/trading/scheduled-orders/{id}/cancel/"
    assert api["prediction"] == "/api/ml/predictions/latest/"
    assert len(api) == 19


def test_the_endpoints_follow_the_urlconf(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    clear_url_caches()
    try:
        api = api_endpoints()
    finally:
        clear_url_caches()
    assert api["buy"] == "/v2/trading/orders/buy/"
    assert api["candles"] == "/v2/market/{code}/candles/"
    assert api["order_cancel"] == "/v2/trading/orders/{id}/cancel/"
    assert len(api) == 19
