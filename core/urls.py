"""Operational routes."""

from django.conf import settings
from django.urls import path
from django.views.generic import RedirectView

from core import ops_views, views

urlpatterns = [
    path("", RedirectView.as_view(url="/home", permanent=False)),
    # Browsers ask for /favicon.ico on pages that do not link an icon (the admin, the API docs).
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True)),
    path("healthz", views.health, name="health"),
    path("readyz", ops_views.readiness, name="readiness"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("internal/realtime/", views.realtime_relay, name="realtime-relay"),
]
