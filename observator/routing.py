"""WebSocket URL root: each app contributes its own routing.websocket_urlpatterns."""

from market.routing import websocket_urlpatterns as market_ws
from trading.routing import websocket_urlpatterns as trading_ws

websocket_urlpatterns = [*market_ws, *trading_ws]
