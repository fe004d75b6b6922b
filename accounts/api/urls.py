"""REST API routes of the accounts app (mounted under /api/)."""

from django.urls import path

from accounts.api import views

urlpatterns = [
    path(
        "accounts/username-availability",
        views.UsernameAvailabilityApi.as_view(),
        name="api-accounts-username-availability",
    ),
    path("accounts/me/", views.MeApi.as_view(), name="api-accounts-me"),
    path("accounts/me/exchange-keys/", views.ExchangeKeysApi.as_view(), name="api-accounts-exchange-keys"),
    path("accounts/token/", views.TokenApi.as_view(), name="api-accounts-token"),
]
