"""Trading REST API: one view per operation; each parses input, calls one service or selector, renders.

Every response (errors included) carries the account's trading ``mode`` in the body and in the
``X-Trading-Mode`` header. Objects are always looked up within the requesting user's own rows (404
otherwise). Order endpoints share the per-user throttle scope ``orders``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from accounts.selectors import exchange_credential_status
from trading import selectors, services
from trading.api import serializers as s
from trading.models import OrdType, Side

ERRORS = {
    400: OpenApiResponse(s.ErrorEnvelope, description="Invalid input or refused by the exchange's rules"),
    403: OpenApiResponse(s.ErrorEnvelope, description="Not allowed"),
    404: OpenApiResponse(s.ErrorEnvelope, description="Not found (or not yours)"),
    409: OpenApiResponse(s.ErrorEnvelope, description="Conflict"),
    429: OpenApiResponse(s.ErrorEnvelope, description="Rate limited"),
    503: OpenApiResponse(s.ErrorEnvelope, description="Exchange unavailable"),
}
MAX_OFFSET = 2**31 - 1
PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 200}, description="default 50"),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
]
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Client idempotency key: a retried request with the same key returns the same order.",
)


class DecimalJSONParser(JSONParser):
    """JSON with numbers parsed straight into Decimal (never through float); NaN/Infinity refused."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(
                stream.read().decode(encoding), parse_float=Decimal, parse_constant=_refuse_constant
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


class TradingView(APIView):
    parser_classes = [DecimalJSONParser]
    throttle_classes = [UserRateThrottle]

    def mode(self, request: Request) -> str:
        if not hasattr(request, "_trading_mode"):
            request._trading_mode = self.profile(request).mode  # type: ignore[attr-defined]
        return request._trading_mode  # type: ignore[attr-defined]

    def profile(self, request: Request) -> Any:
        """The user's trading profile, created on the first request and read once per request (order views
        pass it down to the service)."""
        if not hasattr(request, "_trading_profile"):
            request._trading_profile = services.trading_profile_ensure(  # type: ignore[attr-defined]
                user=request.user, with_kill_switch=True
            )
        return request._trading_profile  # type: ignore[attr-defined]

    def ok(self, request: Request, payload: dict[str, Any], code: int = status.HTTP_200_OK) -> Response:
        return Response({"mode": self.mode(request), **payload}, status=code)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            mode = self.mode(request)
            response["X-Trading-Mode"] = mode
            if isinstance(response.data, dict) and "mode" not in response.data:
                response.data = {"mode": mode, **response.data}
        return super().finalize_response(request, response, *args, **kwargs)


class OrderThrottled(TradingView):
    # Only the (stricter) per-user "orders" scope: one throttle = two cache round trips fewer per order.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "orders"


def _key(request: Request, data: dict[str, Any]) -> str | None:
    return request.headers.get("Idempotency-Key") or data.get("client_order_id")


_order_output: s.OrderOutput | None = None


def _order_out(order: Any) -> dict[str, Any]:
    """One order exactly as ``OrderOutput`` renders it. DRF deep-copies a serializer's declared fields for
    every instance (more CPU than the order's own SQL on the paper path); the fields are built once per
    process instead: ``to_representation`` keeps no state, so one instance serves every thread."""
    global _order_output
    if _order_output is None:
        _order_output = s.OrderOutput()
    return _order_output.to_representation(order)


def _sched_out(so: Any) -> dict[str, Any]:
    return s.ScheduledOrderOutput(so).data


# -- mode, limits, balances -----------------------------------------------------------------------------


class ModeApi(TradingView):
    @extend_schema(
        operation_id="trading_mode_get",
        responses={200: s.ProfileEnvelope, **ERRORS},
        summary="Trading mode (paper or live), key status, halt flags",
    )
    def get(self, request: Request) -> Response:
        return self.ok(request, {"profile": _profile_out(request.user)})

    @extend_schema(
        operation_id="trading_mode_set",
        request=s.ModeInput,
        responses={200: s.ProfileEnvelope, **ERRORS},
        summary='Switch mode; going live needs stored keys, "confirm": true and "confirm_text": "LIVE"',
    )
    def put(self, request: Request) -> Response:
        data = _valid(s.ModeInput, request.data)
        services.trading_mode_set(
            user=request.user, mode=data["mode"], confirm=data["confirm"], confirm_text=data["confirm_text"]
        )
        request._trading_mode = data["mode"]  # type: ignore[attr-defined]
        return self.ok(request, {"profile": _profile_out(request.user)})


def _profile_out(user: Any) -> dict[str, Any]:
    profile = selectors.profile_get(user=user)
    return s.ProfileOutput(
        {
            "mode": profile.mode,
            "live_confirmed_at": profile.live_confirmed_at,
            "has_exchange_keys": exchange_credential_status(user=user).stored,
            "auto_trading_halted": profile.auto_trading_halted,
            "halted_reason": profile.halted_reason,
            "kill_switch_engaged": selectors.kill_switch_engaged(),
        }
    ).data


class RiskLimitsApi(TradingView):
    @extend_schema(operation_id="trading_risk_limits_get", responses={200: s.RiskLimitsEnvelope, **ERRORS})
    def get(self, request: Request) -> Response:
        return self.ok(request, {"risk_limits": s.RiskLimitsOutput(self.profile(request)).data})

    @extend_schema(
        operation_id="trading_risk_limits_set",
        request=s.RiskLimitsInput,
        responses={200: s.RiskLimitsEnvelope, **ERRORS},
        summary="Set limits (null = no limit)",
    )
    def put(self, request: Request) -> Response:
        data = _valid(s.RiskLimitsInput, request.data)
        profile = services.risk_limits_update(
            user=request.user,
            max_order_krw=data.get("max_order_krw"),
            max_position_krw=data.get("max_position_krw"),
            daily_loss_limit_krw=data.get("daily_loss_limit_krw"),
            daily_report=data.get("daily_report"),
        )
        return self.ok(request, {"risk_limits": s.RiskLimitsOutput(profile).data})


class BalancesApi(TradingView):
    @extend_schema(
        operation_id="trading_balances",
        responses={200: s.BalancesEnvelope, **ERRORS},
        summary="Balances per currency (the original /api/balances)",
    )
    def get(self, request: Request) -> Response:
        balances = selectors.balances_get(user=request.user, mode=self.mode(request))
        return self.ok(request, {"balances": s.BalanceOutput(balances, many=True).data})


class PortfolioApi(TradingView):
    @extend_schema(
        operation_id="trading_portfolio",
        responses={200: s.PortfolioEnvelope, **ERRORS},
        summary="Detailed balances with value and P&L (the original /api/tradebalances)",
    )
    def get(self, request: Request) -> Response:
        portfolio = selectors.portfolio_get(user=request.user, mode=self.mode(request))
        return self.ok(request, {"portfolio": s.PortfolioOutput(portfolio).data})


class ReportApi(TradingView):
    throttle_classes = [UserRateThrottle, ScopedRateThrottle]
    throttle_scope = "orders"

    @extend_schema(
        operation_id="trading_report_send",
        request=None,
        responses={200: s.ReportEnvelope, **ERRORS},
        summary="E-mail me my holdings and P&L now",
    )
    def post(self, request: Request) -> Response:
        sent_to = services.report_send(user=request.user)
        return self.ok(request, {"sent_to": sent_to})


class PaperResetApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_paper_reset",
        request=None,
        responses={200: s.BalancesEnvelope, **ERRORS},
        summary="Start paper trading over (open paper orders cancelled, starting KRW again)",
    )
    def post(self, request: Request) -> Response:
        services.paper_account_reset(user=request.user)
        balances = selectors.balances_get(user=request.user, mode="paper")
        return self.ok(request, {"balances": s.BalanceOutput(balances, many=True).data})


# -- orders ---------------------------------------------------------------------------------------------


class BuyApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_buy",
        request=s.BuyInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.OrderEnvelope, **ERRORS},
        summary="Market buy for a KRW amount",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.BuyInput, request.data)
        order = services.order_place(
            user=request.user,
            market=data["market"],
            side=Side.BID,
            ord_type=OrdType.PRICE,
            price=data["amount_krw"],
            idempotency_key=_key(request, data),
            profile=self.profile(request),
        )
        return self.ok(request, {"order": _order_out(order)}, status.HTTP_201_CREATED)


class SellApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_sell",
        request=s.SellInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.OrderEnvelope, **ERRORS},
        summary="Market sell a volume",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.SellInput, request.data)
        order = services.order_place(
            user=request.user,
            market=data["market"],
            side=Side.ASK,
            ord_type=OrdType.MARKET,
            volume=data["volume"],
            idempotency_key=_key(request, data),
            profile=self.profile(request),
        )
        return self.ok(request, {"order": _order_out(order)}, status.HTTP_201_CREATED)


class LimitApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_limit",
        request=s.LimitInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.OrderEnvelope, **ERRORS},
        summary="Limit order at a price",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.LimitInput, request.data)
        order = services.order_place(
            user=request.user,
            market=data["market"],
            side=data["side"],
            ord_type=OrdType.LIMIT,
            price=data["price"],
            volume=data["volume"],
            idempotency_key=_key(request, data),
            profile=self.profile(request),
        )
        return self.ok(request, {"order": _order_out(order)}, status.HTTP_201_CREATED)


class OrderCancelApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_order_cancel",
        request=None,
        responses={200: s.OrderEnvelope, **ERRORS},
        summary="Cancel an open order",
    )
    def post(self, request: Request, order_id: int) -> Response:
        order = services.order_cancel(user=request.user, order_id=order_id)
        return self.ok(request, {"order": _order_out(order)})


class OrderListApi(TradingView):
    @extend_schema(
        operation_id="trading_orders_list",
        parameters=[s.OrderListFilter, *PAGE_PARAMETERS],
        responses={200: s.OrderPage, **ERRORS},
        summary="My orders with fills (newest first)",
    )
    def get(self, request: Request) -> Response:
        filters = _valid(s.OrderListFilter, request.query_params)
        qs = selectors.order_list(user=request.user, **filters)
        return _page(self, request, qs, _order_out)


class OrderDetailApi(TradingView):
    @extend_schema(operation_id="trading_order_detail", responses={200: s.OrderEnvelope, **ERRORS})
    def get(self, request: Request, order_id: int) -> Response:
        order = services.order_refresh_if_stale(
            order=selectors.order_get(user=request.user, order_id=order_id)
        )
        return self.ok(request, {"order": _order_out(order)})


# -- scheduled orders -----------------------------------------------------------------------------------


class ScheduledListCreateApi(TradingView):
    throttle_scope = "orders"

    def get_throttles(self) -> list[Any]:
        if self.request.method == "POST":
            return [UserRateThrottle(), ScopedRateThrottle()]
        return [UserRateThrottle()]

    @extend_schema(
        operation_id="trading_scheduled_list",
        parameters=[s.ScheduledListFilter, *PAGE_PARAMETERS],
        responses={200: s.ScheduledPage, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(s.ScheduledListFilter, request.query_params)
        return _page(self, request, selectors.scheduled_order_list(user=request.user, **filters), _sched_out)

    @extend_schema(
        operation_id="trading_scheduled_create",
        request=s.ScheduledOrderInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.ScheduledEnvelope, **ERRORS},
        summary="Schedule an order at a time or on a price crossing",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.ScheduledOrderInput, request.data)
        so = services.scheduled_order_create(
            user=request.user,
            market=data["market"],
            side=data["side"],
            ord_type=data["ord_type"],
            price=data.get("price"),
            volume=data.get("volume"),
            trigger_type=data["trigger_type"],
            trigger_at=data.get("trigger_at"),
            trigger_price=data.get("trigger_price"),
            expires_at=data.get("expires_at"),
            client_key=_key(request, data),
        )
        return self.ok(request, {"scheduled_order": _sched_out(so)}, status.HTTP_201_CREATED)


class ScheduledDetailApi(TradingView):
    @extend_schema(operation_id="trading_scheduled_detail", responses={200: s.ScheduledEnvelope, **ERRORS})
    def get(self, request: Request, scheduled_order_id: int) -> Response:
        so = selectors.scheduled_order_get(user=request.user, scheduled_order_id=scheduled_order_id)
        return self.ok(request, {"scheduled_order": _sched_out(so)})

    @extend_schema(
        operation_id="trading_scheduled_delete",
        responses={200: s.ScheduledEnvelope, **ERRORS},
        summary="Cancel a pending scheduled order (same as POST .../cancel/)",
    )
    def delete(self, request: Request, scheduled_order_id: int) -> Response:
        so = services.scheduled_order_cancel(user=request.user, scheduled_order_id=scheduled_order_id)
        return self.ok(request, {"scheduled_order": _sched_out(so)})


class ScheduledCancelApi(OrderThrottled):
    @extend_schema(
        operation_id="trading_scheduled_cancel", request=None, responses={200: s.ScheduledEnvelope, **ERRORS}
    )
    def post(self, request: Request, scheduled_order_id: int) -> Response:
        so = services.scheduled_order_cancel(user=request.user, scheduled_order_id=scheduled_order_id)
        return self.ok(request, {"scheduled_order": _sched_out(so)})


# -- helpers --------------------------------------------------------------------------------------------


def _valid(serializer_cls: type, data: Any) -> dict[str, Any]:
    ser = serializer_cls(data=data)
    ser.is_valid(raise_exception=True)
    return dict(ser.validated_data)


class _Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def get_offset(self, request: Request) -> int:
        # An offset past any real page is a 400, not an OverflowError in the database's OFFSET (500).
        raw = request.query_params.get(self.offset_query_param)
        if raw is not None and raw.isdigit() and int(raw) > MAX_OFFSET:
            raise ValidationError({"offset": [f"at most {MAX_OFFSET}"]})
        return super().get_offset(request)


def _page(view: TradingView, request: Request, qs: Any, render: Any) -> Response:
    paginator = _Pagination()
    items = paginator.paginate_queryset(qs, request, view=view)
    return view.ok(
        request,
        {
            "count": paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "results": [render(x) for x in (items or [])],
        },
    )
