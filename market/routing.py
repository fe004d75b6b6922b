"""WebSocket routes of the market app."""

from django.urls import re_path

from market.consumers import MarketConsumer

# Any code reaches the consumer, which closes with 4400 for a code that is not a KRW market.
websocket_urlpatterns: list = [
    re_path(r"^ws/market/(?P<code>[^/]*)/$", MarketConsumer.as_asgi()),
]
