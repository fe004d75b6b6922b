"""Admin for users and their exchange credentials. No key material is shown or editable: only the hint."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import ExchangeCredential, User
from accounts.validators import validate_username

# Only these fields of a credential ever reach an admin page.
CREDENTIAL_SAFE_FIELDS = ("exchange", "access_key_hint", "created_at", "updated_at")


class ObservatorUserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_username(self) -> str:
        username = super().clean_username()
        validate_username(username)
        return username


class ExchangeCredentialInline(admin.StackedInline):
    model = ExchangeCredential
    fields = CREDENTIAL_SAFE_FIELDS
    readonly_fields = CREDENTIAL_SAFE_FIELDS
    extra = 0
    max_num = 1
    can_delete = True
    verbose_name = _("Upbit keys")
    verbose_name_plural = _("Upbit keys")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys are entered by their owner on the profile page, never typed in by staff.
        return False


@admin.register(User)
class ObservatorUserAdmin(UserAdmin):
    add_form = ObservatorUserCreationForm
    list_display = ("username", "email", "phone", "is_staff", "is_active", "date_joined", "has_exchange_keys")
    list_filter = ("is_staff", "is_superuser", "is_active", "email_opt_in", "preferred_language")
    search_fields = ("username", "email", "phone")
    readonly_fields = ("date_joined", "last_login", "privacy_consent", "privacy_consent_at")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Contact"), {"fields": ("email", "phone", "email_opt_in", "preferred_language")}),
        (_("Consent"), {"fields": ("privacy_consent", "privacy_consent_at")}),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )
    inlines = [ExchangeCredentialInline]

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return list(self.inlines) if obj is not None else []

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("exchange_credential")

    @admin.display(boolean=True, description=_("Upbit keys"))
    def has_exchange_keys(self, obj: User) -> bool:
        return hasattr(obj, "exchange_credential")


@admin.register(ExchangeCredential)
class ExchangeCredentialAdmin(admin.ModelAdmin):
    list_display = ("user", "exchange", "access_key_hint", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "access_key_hint")
    fields = ("user", *CREDENTIAL_SAFE_FIELDS)
    readonly_fields = ("user", *CREDENTIAL_SAFE_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # View only (deletion stays possible, e.g. after a leaked key); the change view shows safe fields.
        return False
