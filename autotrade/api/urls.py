"""REST API routes of auto-trading (under /api/trading/auto/, where they were inside the trading app)."""

from django.urls import path

from autotrade.api import views

app_name = "autotrade-api"
urlpatterns = [
    path("trading/auto/", views.AutoSessionsApi.as_view(), name="auto-sessions"),
    path("trading/auto/start/", views.AutoStartApi.as_view(), name="auto-start"),
    path("trading/auto/change/", views.AutoChangeApi.as_view(), name="auto-change"),
    path("trading/auto/stop/", views.AutoStopApi.as_view(), name="auto-stop"),
    path("trading/auto/decisions/", views.AutoDecisionsApi.as_view(), name="auto-decisions"),
]
