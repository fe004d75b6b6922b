"""WebSocket routes of the trading app."""

from django.urls import path

from trading.consumers import UserConsumer

websocket_urlpatterns: list = [path("ws/user/", UserConsumer.as_asgi())]
