"""HTML forms of the account pages: they parse and check input; the services write (and check again)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.selectors import EMAIL_TAKEN_MESSAGE, USERNAME_TAKEN_MESSAGE, email_is_taken, username_is_taken
from accounts.services import EMAIL_DOMAINS
from accounts.validators import normalize_phone, validate_new_password, validate_username

CUSTOM_DOMAIN = "custom"
EMAIL_LOCAL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}$")
DOMAIN_RE = re.compile(
    r"^(?=.{4,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)

# Form field that shows each service error: the service speaks in model terms, the page in its own fields.
SERVICE_TO_FORM_FIELD = {"email": "email_local", "password": "password1"}


class NoEchoTextInput(forms.TextInput):
    """A text input that never writes the submitted value back into the page (for API keys)."""

    def format_value(self, value: Any) -> str | None:
        return None


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Attach a service's ValidationError to the matching form fields (unknown names go on the form)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, errors in error.message_dict.items():
        target = SERVICE_TO_FORM_FIELD.get(name, name)
        if target not in form.fields:
            target = None
        for message in errors:
            if target is None or message not in form.errors.get(target, []):
                form.add_error(target, message)


class SignupForm(forms.Form):
    username = forms.CharField(
        label=_("Username"),
        max_length=20,
        help_text=_("4 to 20 letters or digits."),
        error_messages={"required": _("Enter a username."), "max_length": _("Use at most 20 characters.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
    email_local = forms.CharField(
        label=_("E-mail"),
        max_length=64,
        error_messages={"required": _("Enter your e-mail address.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
    email_domain = forms.ChoiceField(
        label=_("E-mail domain"),
        choices=[(d, d) for d in EMAIL_DOMAINS] + [(CUSTOM_DOMAIN, _("Enter directly"))],
        error_messages={
            "required": _("Choose an e-mail domain."),
            "invalid_choice": _("Choose an e-mail domain."),
        },
    )
    email_domain_custom = forms.CharField(
        label=_("Domain"),
        max_length=253,
        required=False,
        widget=forms.TextInput(
            attrs={"placeholder": "example.com", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
    phone = forms.CharField(
        label=_("Mobile phone"),
        max_length=13,
        error_messages={"required": _("Enter your mobile number.")},
        widget=forms.TextInput(
            attrs={"placeholder": "010-1234-5678", "inputmode": "numeric", "autocomplete": "tel-national"}
        ),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        help_text=_("8 to 16 characters, including at least one special character."),
        error_messages={"required": _("Enter a password.")},
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Confirm password"),
        strip=False,
        error_messages={"required": _("Enter the password again.")},
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    privacy_consent = forms.BooleanField(
        label=_("I agree to the collection and use of my personal data (required)."),
        error_messages={"required": _("You must agree to the collection and use of personal data.")},
    )
    email_opt_in = forms.BooleanField(label=_("Send me e-mail notifications (optional)."), required=False)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        validate_username(username)
        if username_is_taken(username=username):
            raise ValidationError(USERNAME_TAKEN_MESSAGE, code="username_taken")
        return username

    def clean_email_local(self) -> str:
        local = self.cleaned_data["email_local"].strip()
        if "@" in local:
            raise ValidationError(
                _("Enter only the part before @, then choose the domain."), code="email_local"
            )
        if not EMAIL_LOCAL_RE.fullmatch(local):
            raise ValidationError(_("Enter a valid e-mail address."), code="email_local")
        return local

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        domain = cleaned.get("email_domain")
        if domain == CUSTOM_DOMAIN:
            domain = (cleaned.get("email_domain_custom") or "").strip().lower()
            if not domain:
                self.add_error("email_domain_custom", _("Enter the e-mail domain, e.g. example.com."))
                domain = None
            elif not DOMAIN_RE.fullmatch(domain):
                self.add_error("email_domain_custom", _("Enter a valid domain, e.g. example.com."))
                domain = None
        local = cleaned.get("email_local")
        if local and domain:
            email = f"{local}@{domain}"
            try:
                validate_email(email)
            except ValidationError:
                self.add_error("email_local", _("Enter a valid e-mail address."))
            else:
                if email_is_taken(email=email):
                    self.add_error("email_local", EMAIL_TAKEN_MESSAGE)
                else:
                    cleaned["email"] = email.lower()

        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1:
            candidate = User(username=cleaned.get("username") or "", email=cleaned.get("email") or "")
            try:
                validate_new_password(password1, user=candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        if password1 and password2 and password1 != password2:
            self.add_error("password2", _("The two passwords do not match."))
        return cleaned

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "username": data["username"],
            "email": data["email"],
            "phone": data["phone"],
            "password": data["password1"],
            "privacy_consent": data["privacy_consent"],
            "email_opt_in": data.get("email_opt_in", False),
        }


class LoginForm(AuthenticationForm):
    """Username + password; a failure never says which of the two was wrong."""

    error_messages = {
        "invalid_login": _("The username or password is incorrect."),
        "inactive": _("The username or password is incorrect."),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = _("Username")
        self.fields["username"].error_messages["required"] = _("Enter your username.")
        self.fields["password"].label = _("Password")
        self.fields["password"].error_messages["required"] = _("Enter your password.")


class ExchangeKeysForm(forms.Form):
    """Upbit keys as typed; format rules live in exchange_credential_save. Values are never echoed back."""

    access_key = forms.CharField(
        label=_("Access key"),
        max_length=200,
        error_messages={"required": _("Enter your Upbit access key.")},
        widget=NoEchoTextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}
        ),
    )
    secret_key = forms.CharField(
        label=_("Secret key"),
        max_length=200,
        error_messages={"required": _("Enter your Upbit secret key.")},
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    # Shown only after Upbit refused the keys or could not be asked: storing them then needs this consent.
    save_anyway = forms.BooleanField(label=_("Save these keys anyway"), required=False)


class ProfileSettingsForm(forms.Form):
    """The user's own contact details and notification choice."""

    email = forms.EmailField(label=_("E-mail"), error_messages={"required": _("Enter your e-mail address.")})
    phone = forms.CharField(
        label=_("Mobile phone"),
        max_length=13,
        error_messages={"required": _("Enter your mobile number.")},
        widget=forms.TextInput(attrs={"placeholder": "010-1234-5678", "inputmode": "numeric"}),
    )
    email_opt_in = forms.BooleanField(label=_("Send me e-mail notifications."), required=False)

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])
