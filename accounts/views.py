"""Account pages: sign-up, log-in/out, home, profile (with exchange keys) and the lockout page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.html import conditional_escape, format_html
from django.utils.module_loading import import_string
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import (
    CUSTOM_DOMAIN,
    ExchangeKeysForm,
    LoginForm,
    ProfileSettingsForm,
    SignupForm,
    add_service_errors,
)
from accounts.keycheck import KeyCheckResult, KeyCheckStatus, key_check_reason
from accounts.selectors import exchange_credential_status
from accounts.services import (
    EMAIL_DOMAINS,
    exchange_credential_delete,
    exchange_credential_submit,
    user_create,
    user_update_profile,
)

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_create(**form.service_kwargs(), preferred_language=translation.get_language() or "en")
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome to OBservator! Your account has been created."))
            return redirect("home")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "email_domains": EMAIL_DOMAINS, "custom_domain": CUSTOM_DOMAIN}
    return render(request, "accounts/signup.html", context, status=status)


class AccountLoginView(LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class AccountLogoutView(LogoutView):
    """POST only (a GET gets 405), so a link or an image on another site cannot log the user out."""

    http_method_names = ["post", "options"]
    next_page = "login"


def home_view(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


def _profile_sections(request: HttpRequest) -> list[SafeString]:
    """HTML of the optional profile sections other apps register in settings.PROFILE_SECTIONS.

    Each entry is a dotted path to ``callable(request) -> str`` returning HTML-safe markup (e.g. from
    render_to_string). One failing section shows a short notice instead of breaking the page.
    """
    sections: list[SafeString] = []
    for path in settings.PROFILE_SECTIONS:
        try:
            renderer: Callable[[HttpRequest], Any] = import_string(path)
            sections.append(conditional_escape(renderer(request)))
        except Exception:  # noqa: BLE001 - a broken add-on section must not take the key form down with it
            logger.exception("profile section failed", extra={"section": path})
            sections.append(
                format_html(
                    '<section class="card notice notice-error" role="alert">{}</section>',
                    _("This section is unavailable right now. Please try again later."),
                )
            )
    return sections


def _render_profile(
    request: HttpRequest,
    *,
    keys_form: ExchangeKeysForm | None = None,
    settings_form: ProfileSettingsForm | None = None,
    key_check: KeyCheckResult | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    context = {
        "keys_form": keys_form or ExchangeKeysForm(),
        "key_check": key_check,
        "key_check_reason": key_check_reason(key_check) if key_check else "",
        "settings_form": settings_form
        or ProfileSettingsForm(
            initial={"email": user.email, "phone": user.phone, "email_opt_in": user.email_opt_in}
        ),
        "key_status": exchange_credential_status(user=user),
        "profile_sections": _profile_sections(request),
    }
    return render(request, "accounts/profile.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def profile_view(request: HttpRequest) -> HttpResponse:
    """GET shows the profile; POST saves the Upbit keys (the form never echoes them back)."""
    if request.method == "GET":
        return _render_profile(request)
    form = ExchangeKeysForm(request.POST)
    key_check = None
    if form.is_valid():
        try:
            result = exchange_credential_submit(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if result.credential is not None:
                if result.check.status is KeyCheckStatus.VALID:
                    messages.success(
                        request, _("Upbit accepted your keys. They have been saved and encrypted.")
                    )
                else:
                    messages.warning(
                        request,
                        format_html(
                            "{} {}",
                            _("Your Upbit keys were saved without a successful check."),
                            key_check_reason(result.check),
                        ),
                    )
                return redirect("profile")
            key_check = result.check
    return _render_profile(request, keys_form=form, key_check=key_check, status=400)


@login_required
@require_POST
def profile_keys_delete_view(request: HttpRequest) -> HttpResponse:
    if exchange_credential_delete(user=request.user):
        messages.success(request, _("Your Upbit keys have been removed."))
    else:
        messages.info(request, _("No Upbit keys were stored."))
    return redirect("profile")


@login_required
@require_POST
def profile_settings_view(request: HttpRequest) -> HttpResponse:
    form = ProfileSettingsForm(request.POST)
    if form.is_valid():
        try:
            user_update_profile(user=request.user, data=form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Your details have been updated."))
            return redirect("profile")
    return _render_profile(request, settings_form=form, status=400)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes calls this when a username + address is locked out after too many failures (HTTP 429)."""
    cooloff = settings.AXES_COOLOFF_TIME
    if isinstance(cooloff, (int, float)):
        cooloff = timedelta(hours=cooloff)
    minutes = max(1, round(cooloff.total_seconds() / 60)) if isinstance(cooloff, timedelta) else None
    return render(request, "accounts/lockout.html", {"cooloff_minutes": minutes}, status=429)
