"""ML REST API: the active model of a market and its latest prediction (for the dashboard)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound, ValidationFailed
from mlmodel import selectors

MARKET_RE = re.compile(r"^[A-Z]{2,5}-[A-Z0-9]{1,15}$")
MARKET_PARAM = OpenApiParameter("market", str, required=True, description="e.g. KRW-BTC")


def _market(request: Request) -> str:
    market = (request.query_params.get("market") or "").strip().upper()
    if not MARKET_RE.match(market):
        raise ValidationFailed(_("Give a market code like KRW-BTC."), code="invalid_market")
    return market


class ActiveModelOutput(serializers.Serializer):
    id = serializers.IntegerField()
    market = serializers.CharField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    horizon_s = serializers.FloatField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    data_start = serializers.DateTimeField(allow_null=True)
    data_end = serializers.DateTimeField(allow_null=True)
    feature_version = serializers.CharField()
    metrics = serializers.DictField()
    verdict = serializers.CharField()


class ActiveModelApi(APIView):
    @extend_schema(parameters=[MARKET_PARAM], responses={200: ActiveModelOutput})
    def get(self, request: Request) -> Response:
        market = _market(request)
        version = selectors.model_active(market=market)
        if version is None:
            raise NotFound(_("No model serves %(market)s yet.") % {"market": market}, code="no_model")
        data = selectors.model_summary(version=version, staff=False)
        return Response(ActiveModelOutput(data).data)


class PredictionOutput(serializers.Serializer):
    market = serializers.CharField()
    ts = serializers.IntegerField(help_text="epoch ms of the newest book snapshot used")
    predicted_return = serializers.FloatField(help_text="log-return over horizon_s")
    predicted_return_pct = serializers.FloatField()
    horizon_s = serializers.FloatField()
    mid = serializers.FloatField(allow_null=True)
    model_version = serializers.CharField(allow_null=True)
    age_s = serializers.FloatField()


class LatestPredictionApi(APIView):
    @extend_schema(parameters=[MARKET_PARAM], responses={200: PredictionOutput})
    def get(self, request: Request) -> Response:
        market = _market(request)
        p = selectors.prediction_latest(market=market)
        if p is None:
            raise NotFound(_("No prediction for %(market)s yet.") % {"market": market}, code="no_prediction")
        data: dict[str, Any] = {
            "market": p.market,
            "ts": int(p.ts.timestamp() * 1000),
            "predicted_return": p.predicted_return,
            "predicted_return_pct": p.predicted_return * 100,
            "horizon_s": p.horizon_s,
            "mid": p.mid,
            "model_version": p.model_version.label if p.model_version_id else None,
            "age_s": max(0.0, (dt.datetime.now(dt.UTC) - p.created_at).total_seconds()),
        }
        return Response(PredictionOutput(data).data)
