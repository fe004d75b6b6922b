"""ASGI entry point: Django for HTTP, Channels for WebSockets (session auth, allowed-hosts origin check)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.local")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from core.relay_asgi import RealtimeRelayFastPath  # noqa: E402
from observator.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The embedded-mode realtime relay is served before Django's middleware stack (core/relay_asgi.py).
        "http": RealtimeRelayFastPath(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
