"""Admin for auto-trading sessions and their decision log (read-only; stop through the service) and the users'
kept auto-trading settings."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from autotrade.models import AutoTradeDecision, AutoTradeSession, AutoTradeSettings
from autotrade.services import autotrade_stop
from core.forms import StrictDecimalFormField


@admin.register(AutoTradeSession)
class AutoTradeSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "market",
        "mode",
        "state",
        "threshold",
        "order_krw",
        "cooldown_s",
        "started_at",
        "stopped_at",
    )
    list_filter = ("state", "mode", "market")
    search_fields = ("user__username",)
    readonly_fields = [f.name for f in AutoTradeSession._meta.fields]
    actions = ["stop_sessions"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Stop the selected sessions (cancels their open orders)"))
    def stop_sessions(self, request: HttpRequest, queryset: QuerySet[AutoTradeSession]) -> None:
        for s in queryset.select_related("user"):
            autotrade_stop(user=s.user, session_id=s.pk, reason=f"stopped by {request.user.get_username()}")
        self.message_user(request, _("Stopped."), messages.SUCCESS)


@admin.register(AutoTradeDecision)
class AutoTradeDecisionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "market",
        "prediction_ts",
        "predicted_return",
        "threshold",
        "cost",
        "action",
        "reason",
        "outcome",
        "order",
    )
    list_filter = ("action", "reason", "outcome", "market")
    search_fields = ("user__username",)
    readonly_fields = [f.name for f in AutoTradeDecision._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AutoTradeSettings)
class AutoTradeSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "threshold", "updated_at")
    search_fields = ("user__username",)
    readonly_fields = ("updated_at",)
    raw_id_fields = ("user",)
    # The threshold reads numbers as the API reads amounts (ASCII digits, no sign).
    formfield_overrides = {models.DecimalField: {"form_class": StrictDecimalFormField, "signed": False}}
