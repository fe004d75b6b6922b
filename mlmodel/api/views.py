"""ML REST API: the state of a market's model (what the dashboard shows), the active model and its latest
prediction."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound, ValidationFailed
from market.upbit.protocol import is_krw_market
from mlmodel import selectors

MARKET_PARAM = OpenApiParameter("market", str, required=True, description="e.g. KRW-BTC")


def _market(request: Request) -> str:
    market = (request.query_params.get("market") or "").strip().upper()
    if not is_krw_market(market):
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
    @extend_schema(
        parameters=[MARKET_PARAM],
        responses={
            200: ActiveModelOutput,
            404: OpenApiResponse(
                description="No model serves the market (code ``no_model``). Pages use "
                "``/api/ml/models/state/``, which answers 200 in every state."
            ),
        },
    )
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
        return Response(PredictionOutput(selectors.prediction_data(prediction=p)).data)


class ModelStateOutput(serializers.Serializer):
    market = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["active", "training", "not_promoted", "collecting", "not_recorded", "none"],
        help_text="active: a model serves predictions; training: the first model is being trained "
        "(progress); not_promoted: the last attempt's candidate failed the promotion rule or the run "
        "failed (reason); collecting: recording data until the first model is trained by itself "
        "(collected_minutes of needed_minutes); not_recorded: the collector does not record this market; "
        "none: no model and no automatic first model.",
    )
    message = serializers.CharField(help_text="the state in one sentence, in the user's language")
    model = ActiveModelOutput(allow_null=True, help_text="the active model (state active), else null")
    prediction = PredictionOutput(allow_null=True, help_text="its newest stored prediction, if any")
    collected_minutes = serializers.IntegerField(allow_null=True)
    needed_minutes = serializers.IntegerField(
        allow_null=True, help_text="recorded data the next automatic training waits for"
    )
    progress = serializers.IntegerField(allow_null=True, help_text="0-100 while training")
    run_id = serializers.IntegerField(allow_null=True, help_text="the training run shown")
    reason = serializers.CharField(allow_blank=True, help_text="why no model passed (not_promoted)")


class ModelStateApi(APIView):
    @extend_schema(
        parameters=[MARKET_PARAM],
        responses={200: ModelStateOutput},
        description="The state of the market's prediction model, answered with 200 in every state "
        "(no model is a state, not an error): what the dashboard and /model show.",
    )
    def get(self, request: Request) -> Response:
        market = _market(request)
        return Response(ModelStateOutput(selectors.model_state_get(market=market)).data)
