"""ASGI entry point: Django for HTTP, Channels for WebSockets (session auth, allowed-hosts origin check)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.local")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from core.asgi_pool import PooledSyncASGIHandler  # noqa: E402

# The REST API's sync views run on a fixed pool of threads that keep their connections (core/asgi_pool.py).
django_asgi_app = PooledSyncASGIHandler(
    paths=settings.WEB_SYNC_PATHS,
    threads=settings.WEB_SYNC_THREADS,
    conn_max_age=settings.WEB_SYNC_CONN_MAX_AGE,
)

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
