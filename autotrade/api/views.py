"""Auto-trading REST API (under /api/trading/auto/): start, change threshold, stop, list sessions and the
decision log. Owner-scoped: a session or decision of someone else is "not found"."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from autotrade import selectors, services
from core.api import StrictDecimalField
from core.converters import MAX_ID
from trading.api.views import ERRORS, TradingView

PCT = Decimal(100)


class _SessionRef(serializers.Serializer):
    session_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    market = serializers.CharField(required=False, max_length=20)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("session_id") and not attrs.get("market"):
            raise serializers.ValidationError("Give the session's id or its market.")
        return attrs


class SessionOutput(serializers.Serializer):
    """A session (threshold as a fraction and in percent, amounts as decimal strings)."""

    id = serializers.IntegerField()
    market = serializers.CharField()
    mode = serializers.CharField()
    state = serializers.CharField()
    threshold = serializers.CharField()
    threshold_pct = serializers.CharField()
    order_krw = serializers.CharField()
    max_position_krw = serializers.CharField(allow_null=True)
    stop_loss = serializers.CharField(allow_null=True)
    cooldown_s = serializers.IntegerField()
    started_at = serializers.CharField()
    stopped_at = serializers.CharField(allow_null=True)
    stop_reason = serializers.CharField()
    position = serializers.DictField(required=False)


class SessionsOutput(serializers.Serializer):
    mode = serializers.CharField()
    sessions = SessionOutput(many=True, help_text="newest first, at most 50")


class AutoStartApi(TradingView):
    class AutoStartInput(serializers.Serializer):
        market = serializers.CharField(max_length=20)
        threshold_pct = StrictDecimalField(
            max_digits=12,
            decimal_places=8,
            required=False,
            help_text="Profit threshold in percent, 0 to 5 (0.05 = 0.05 %); omitted: the user's kept choice.",
        )
        order_krw = StrictDecimalField(signed=False, max_digits=20, decimal_places=8)
        cooldown_s = serializers.IntegerField(required=False, min_value=0, max_value=86_400)
        max_position_krw = StrictDecimalField(
            signed=False, max_digits=20, decimal_places=8, required=False, allow_null=True
        )
        stop_loss_pct = StrictDecimalField(
            max_digits=12,
            decimal_places=8,
            required=False,
            allow_null=True,
            help_text="Sell when the bid is this many percent below the session's average cost.",
        )

    InputSerializer = AutoStartInput

    @extend_schema(request=InputSerializer, responses={201: SessionOutput, **ERRORS})
    def post(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        stop = v.get("stop_loss_pct")
        session = services.autotrade_start(
            user=request.user,
            market=v["market"],
            threshold=v["threshold_pct"] / PCT if "threshold_pct" in v else None,
            order_krw=v["order_krw"],
            cooldown_s=v.get("cooldown_s"),
            max_position_krw=v.get("max_position_krw"),
            stop_loss=stop / PCT if stop is not None else None,
        )
        return self.ok(request, {"session": selectors.session_data(session=session)}, status.HTTP_201_CREATED)


class AutoChangeOutput(serializers.Serializer):
    session = SessionOutput(
        allow_null=True, help_text="The running session it applies to; null if none runs."
    )
    threshold = serializers.CharField(help_text="The user's kept threshold as a fraction.")
    threshold_pct = serializers.CharField(help_text="The same in percent.")


class AutoChangeApi(TradingView):
    """Set the profit threshold: kept for the user even while stopped, applied to the running session."""

    class AutoChangeInput(_SessionRef):
        threshold_pct = StrictDecimalField(
            max_digits=12, decimal_places=8, help_text="Profit threshold in percent, 0 to 5."
        )

    InputSerializer = AutoChangeInput

    @extend_schema(request=InputSerializer, responses={200: AutoChangeOutput, **ERRORS})
    def put(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        session = services.autotrade_change(
            user=request.user,
            threshold=v["threshold_pct"] / PCT,
            session_id=v.get("session_id"),
            market=v.get("market"),
        )
        threshold = selectors.autotrade_threshold_get(user=request.user)
        return self.ok(
            request,
            {
                "session": selectors.session_data(session=session) if session is not None else None,
                "threshold": selectors.threshold_str(threshold),
                "threshold_pct": selectors.threshold_str(threshold * 100),
            },
        )


class AutoStopApi(TradingView):
    class AutoStopInput(_SessionRef):
        pass

    InputSerializer = AutoStopInput

    @extend_schema(request=InputSerializer, responses={200: SessionOutput, **ERRORS})
    def post(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        session = services.autotrade_stop(
            user=request.user, session_id=v.get("session_id"), market=v.get("market")
        )
        return self.ok(request, {"session": selectors.session_data(session=session)})


class AutoSessionsApi(TradingView):
    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, description="running or stopped"),
            OpenApiParameter("market", str, description="only this market's sessions"),
        ],
        responses={200: SessionsOutput, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        qs = selectors.autotrade_sessions_list(user=request.user)
        state = request.query_params.get("state")
        if state in ("running", "stopped"):
            qs = qs.filter(state=state)
        market = (request.query_params.get("market") or "").strip().upper()
        if market:
            qs = qs.filter(market=market)
        sessions = [selectors.session_data(session=x) for x in qs[:50]]
        return self.ok(request, {"sessions": sessions})


class AutoDecisionsFilter(serializers.Serializer):
    session_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    market = serializers.CharField(required=False, max_length=20)
    actions_only = serializers.BooleanField(required=False, default=False, help_text="only buys and sells")
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=500, default=100, help_text="at most 500 (default 100)"
    )


class AutoDecisionsApi(TradingView):
    @extend_schema(parameters=[AutoDecisionsFilter], responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request) -> Response:
        s = AutoDecisionsFilter(data=request.query_params)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        qs = selectors.autotrade_decisions_list(
            user=request.user,
            session_id=v.get("session_id"),
            market=v.get("market"),
            actions_only=v["actions_only"],
        )
        decisions = [selectors.decision_data(decision=d) for d in qs[: v["limit"]]]
        return self.ok(request, {"decisions": decisions})
