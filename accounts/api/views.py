"""REST API of the accounts app. Every view works on request.user only; there is no user id in any route."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.api.serializers import (
    ExchangeKeysInputSerializer,
    ExchangeKeyStatusSerializer,
    MeInputSerializer,
    MeOutputSerializer,
    TokenInputSerializer,
    TokenOutputSerializer,
    UsernameAvailabilityInputSerializer,
    UsernameAvailabilityOutputSerializer,
)
from accounts.errors import ExchangeKeysNotAccepted
from accounts.models import User
from accounts.selectors import exchange_credential_status, username_availability
from accounts.services import exchange_credential_delete, exchange_credential_submit, user_update_profile
from core.errors import ApplicationError, ValidationFailed
from core.logging import register_secret


class _ConfiguredRateThrottle(SimpleRateThrottle):
    """Per-address throttle whose rate comes from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope] when set."""

    default_rate = "60/min"

    def get_rate(self) -> str:
        rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
        return rates.get(self.scope) or self.default_rate

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UsernameCheckThrottle(_ConfiguredRateThrottle):
    scope = "username_check"
    default_rate = "60/min"


class TokenThrottle(_ConfiguredRateThrottle):
    scope = "auth_token"
    default_rate = "10/min"


class TooManyAttempts(ApplicationError):
    status_code = 429
    code = "locked_out"


def _me_payload(user: User) -> dict[str, Any]:
    keys = exchange_credential_status(user=user)
    return {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "phone": user.phone,
        "email_opt_in": user.email_opt_in,
        "preferred_language": user.preferred_language,
        "date_joined": user.date_joined,
        "privacy_consent_at": user.privacy_consent_at,
        "exchange_keys": ExchangeKeyStatusSerializer(keys).data,
    }


class UsernameAvailabilityApi(APIView):
    """Live duplicate check used by the sign-up page (public, throttled per address)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [UsernameCheckThrottle]

    @extend_schema(
        operation_id="accounts_username_availability",
        parameters=[OpenApiParameter("username", str, required=True, description="The username to check.")],
        responses={200: UsernameAvailabilityOutputSerializer},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        serializer = UsernameAvailabilityInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        result = username_availability(username=serializer.validated_data["username"])
        output = UsernameAvailabilityOutputSerializer(
            {
                "username": result.username,
                "available": result.available,
                "reason": result.reason,
                "message": str(result.message),
            }
        )
        return Response(output.data)


class MeApi(APIView):
    """The caller's own profile. Exchange keys appear only as a status with a partial access-key hint."""

    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="accounts_me_get", responses={200: MeOutputSerializer})
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(_me_payload(request.user)).data)

    @extend_schema(
        operation_id="accounts_me_update", request=MeInputSerializer, responses={200: MeOutputSerializer}
    )
    def patch(self, request: Request) -> Response:
        serializer = MeInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = user_update_profile(user=request.user, data=serializer.validated_data)
        return Response(MeOutputSerializer(_me_payload(user)).data)


class ExchangeKeysApi(APIView):
    """Save (PUT) or remove (DELETE) the caller's Upbit keys. Responses never contain the keys."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="accounts_exchange_keys_save",
        request=ExchangeKeysInputSerializer,
        responses={
            200: ExchangeKeyStatusSerializer,
            400: OpenApiResponse(
                description="Bad key format, or Upbit refused the keys (error.code exchange_keys_refused)."
            ),
            503: OpenApiResponse(
                description="Upbit could not be asked (exchange_keys_unverified); save_anyway stores them."
            ),
        },
    )
    def put(self, request: Request) -> Response:
        """The keys are checked with a read-only Upbit call first and stored only when Upbit accepts them,
        or when ``save_anyway`` is true."""
        serializer = ExchangeKeysInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = exchange_credential_submit(user=request.user, **serializer.validated_data)
        if result.credential is None:
            raise ExchangeKeysNotAccepted(result.check)
        return Response(ExchangeKeyStatusSerializer(exchange_credential_status(user=request.user)).data)

    @extend_schema(operation_id="accounts_exchange_keys_delete", responses={204: None})
    def delete(self, request: Request) -> Response:
        exchange_credential_delete(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenApi(APIView):
    """API token for scripts: POST username + password to get it, DELETE (authenticated) to revoke it."""

    throttle_classes = [TokenThrottle]

    def get_authenticators(self) -> list[Any]:
        # POST authenticates by the body alone (no session, hence no CSRF); DELETE needs the caller.
        if self.request is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [AllowAny()]
        return [IsAuthenticated()]

    @extend_schema(
        operation_id="accounts_token_obtain",
        request=TokenInputSerializer,
        responses={
            200: TokenOutputSerializer,
            400: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(description="Locked out after repeated failures, or throttled."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request=request, **serializer.validated_data)
        if getattr(request, "axes_locked_out", False):
            raise TooManyAttempts(_("Too many failed login attempts. Please try again later."))
        if user is None or not user.is_active:
            raise ValidationFailed(_("The username or password is incorrect."), code="invalid_login")
        token, _created = Token.objects.get_or_create(user=user)
        register_secret(token.key)
        return Response(TokenOutputSerializer({"token": token.key}).data)

    @extend_schema(operation_id="accounts_token_revoke", request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
