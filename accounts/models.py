"""Users and their exchange credentials (encrypted at rest)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """The custom user model (from the first migration). Username rules are enforced in services."""

    email = models.EmailField(_("email address"))
    phone = models.CharField(_("phone"), max_length=13, blank=True)
    privacy_consent = models.BooleanField(_("privacy consent"), default=False)
    privacy_consent_at = models.DateTimeField(_("privacy consent time"), null=True, blank=True)
    email_opt_in = models.BooleanField(_("e-mail notifications"), default=False)
    preferred_language = models.CharField(
        _("preferred language"), max_length=8, choices=settings.LANGUAGES, default="en"
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class ExchangeCredential(models.Model):
    """A user's Upbit API keys. Both halves are Fernet tokens; plaintext never touches the database."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="exchange_credential")
    exchange = models.CharField(max_length=16, default="upbit")
    access_key_encrypted = models.TextField()
    secret_key_encrypted = models.TextField()
    # Shown to the user so they can recognise the key; never enough to use it.
    access_key_hint = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.exchange} key {self.access_key_hint} of {self.user_id}"
