"""WebSocket routes of the trading app."""

websocket_urlpatterns: list = []
