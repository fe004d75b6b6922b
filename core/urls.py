"""Operational routes."""

from django.urls import path
from django.views.generic import RedirectView

from core import views

urlpatterns = [
    path("", RedirectView.as_view(url="/home", permanent=False)),
    path("healthz", views.health, name="health"),
    path("internal/realtime/", views.realtime_relay, name="realtime-relay"),
]
