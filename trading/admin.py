"""Admin: orders (money fields read-only), scheduled orders, profiles, the global kill switch."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.forms import StrictDecimalFormField
from trading.models import Fill, Order, ScheduledOrder, TradingProfile, TradingSwitch
from trading.services import kill_switch_engage, kill_switch_release


class FillInline(admin.TabularInline):
    model = Fill
    extra = 0
    can_delete = False
    readonly_fields = ["trade_uuid", "price", "volume", "funds", "fee", "realized_pnl", "executed_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "mode",
        "market",
        "side",
        "ord_type",
        "price",
        "volume",
        "state",
        "source",
        "executed_volume",
        "paid_fee",
        "created_at",
    ]
    list_filter = ["mode", "state", "source", "side", "market"]
    search_fields = ["user__username", "idempotency_key", "exchange_uuid"]
    readonly_fields = [
        "user",
        "mode",
        "market",
        "side",
        "ord_type",
        "price",
        "volume",
        "source",
        "idempotency_key",
        "request_fingerprint",
        "exchange_uuid",
        "executed_volume",
        "executed_funds",
        "paid_fee",
        "state",
        "error_code",
        "error_message",
        "created_at",
        "submitted_at",
        "closed_at",
        "last_synced_at",
    ]
    inlines = [FillInline]
    actions = ["engage_kill_switch"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(
        description=_("Engage the kill switch (cancel ALL open orders, stop all auto-trading)"),
        permissions=["change"],
    )
    def engage_kill_switch(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        counts = kill_switch_engage(by=request.user, reason=str(_("Engaged from the orders admin")))
        self.message_user(
            request,
            _("Kill switch engaged: %(cancelled)s orders cancelled, %(failed)s failed.") % counts,
            messages.WARNING,
        )


@admin.register(ScheduledOrder)
class ScheduledOrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "mode",
        "market",
        "side",
        "ord_type",
        "trigger_type",
        "trigger_at",
        "trigger_price",
        "expires_at",
        "state",
        "order",
    ]
    list_filter = ["state", "trigger_type", "mode"]
    search_fields = ["user__username"]
    readonly_fields = [
        "user",
        "mode",
        "price",
        "volume",
        "fire_key",
        "client_key",
        "order",
        "claimed_at",
        "fired_at",
        "state",
        "failure_reason",
    ]


@admin.register(TradingProfile)
class TradingProfileAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "mode",
        "max_order_krw",
        "max_position_krw",
        "daily_loss_limit_krw",
        "auto_trading_halted",
        "daily_report",
    ]
    list_filter = ["mode", "auto_trading_halted", "daily_report"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "mode", "live_confirmed_at", "halted_at", "last_report_sent_at"]
    # The limits read numbers as the API reads amounts (ASCII digits, no sign).
    formfield_overrides = {models.DecimalField: {"form_class": StrictDecimalFormField, "signed": False}}


@admin.register(TradingSwitch)
class TradingSwitchAdmin(admin.ModelAdmin):
    list_display = ["__str__", "engaged", "reason", "engaged_at", "engaged_by"]
    fields = ["engaged", "reason", "engaged_at", "engaged_by"]
    readonly_fields = ["engaged_at", "engaged_by"]
    actions = ["engage", "release"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not TradingSwitch.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TradingSwitch, form: Any, change: bool) -> None:
        # Editing the flag goes through the services so engaging really cancels and halts everything.
        if obj.engaged:
            counts = kill_switch_engage(by=request.user, reason=obj.reason)
            self.message_user(
                request,
                _("Kill switch engaged: %(cancelled)s orders cancelled, %(failed)s failed.") % counts,
                messages.WARNING,
            )
        else:
            kill_switch_release(by=request.user)

    @admin.action(
        description=_("Engage: cancel all open orders and stop all auto-trading"), permissions=["change"]
    )
    def engage(self, request: HttpRequest, queryset: QuerySet[TradingSwitch]) -> None:
        counts = kill_switch_engage(by=request.user, reason=str(_("Engaged from the admin")))
        self.message_user(
            request,
            _("Kill switch engaged: %(cancelled)s orders cancelled, %(failed)s failed.") % counts,
            messages.WARNING,
        )

    @admin.action(description=_("Release: accept orders again"), permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[TradingSwitch]) -> None:
        kill_switch_release(by=request.user)
        self.message_user(request, _("Kill switch released."))
