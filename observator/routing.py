"""WebSocket URL root: each app contributes its own routing.websocket_urlpatterns."""

from django.urls import re_path

from core.websocket import NotFoundConsumer
from market.routing import websocket_urlpatterns as market_ws
from trading.routing import websocket_urlpatterns as trading_ws

# Last: any other path is accepted and closed with 4404, never an HTTP 500 "No route found".
websocket_urlpatterns = [*market_ws, *trading_ws, re_path(r"", NotFoundConsumer.as_asgi())]
