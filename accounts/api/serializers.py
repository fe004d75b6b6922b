"""Input/output shapes of the accounts API. Keys only ever go in; out comes a status with a partial hint."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers


class ExchangeKeyStatusSerializer(serializers.Serializer):
    stored = serializers.BooleanField()
    exchange = serializers.CharField(allow_null=True)
    access_key_hint = serializers.CharField(
        allow_null=True, help_text="First and last four characters of the access key, e.g. 'AbCd…wXyZ'."
    )
    updated_at = serializers.DateTimeField(allow_null=True)


class MeOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    phone = serializers.CharField()
    email_opt_in = serializers.BooleanField()
    preferred_language = serializers.CharField()
    date_joined = serializers.DateTimeField()
    privacy_consent_at = serializers.DateTimeField(allow_null=True)
    exchange_keys = ExchangeKeyStatusSerializer()


class MeInputSerializer(serializers.Serializer):
    """Fields a user may change on their own profile (all optional for PATCH)."""

    email = serializers.CharField(required=False, max_length=254)
    phone = serializers.CharField(required=False, max_length=13, help_text="010-1234-5678")
    email_opt_in = serializers.BooleanField(required=False)
    preferred_language = serializers.ChoiceField(
        choices=[code for code, _name in settings.LANGUAGES], required=False
    )


class ExchangeKeysInputSerializer(serializers.Serializer):
    access_key = serializers.CharField(max_length=200, write_only=True, trim_whitespace=True)
    secret_key = serializers.CharField(max_length=200, write_only=True, trim_whitespace=True)
    save_anyway = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Store the keys even when Upbit refuses them or cannot be asked (they are checked first).",
    )


class UsernameAvailabilityInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=256, allow_blank=True, trim_whitespace=True)


class UsernameAvailabilityOutputSerializer(serializers.Serializer):
    username = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=["available", "invalid", "taken"])
    message = serializers.CharField(help_text="Explanation in the request's language.")


class TokenInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, style={"input_type": "password"}, trim_whitespace=False)


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
