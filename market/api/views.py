"""Public market-data API: one view per operation, each parses input, calls one selector, renders."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from market import selectors
from market.api import serializers as s
from market.api.throttling import MarketDataThrottle

CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="KRW market code, e.g. KRW-BTC")
TAG = ["market"]
INTERVALS = selectors.CANDLE_INTERVALS


class PublicMarketView(APIView):
    authentication_classes: list[Any] = []  # public data: no session, hence no CSRF concerns
    permission_classes = [AllowAny]
    throttle_classes = [MarketDataThrottle]


class MarketListApi(PublicMarketView):
    @extend_schema(tags=TAG, summary="KRW markets", responses=s.MarketOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.MarketOutput(selectors.market_list(), many=True).data)


class TickerApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="Current price, change, high/low, 24 h volume",
        parameters=[CODE],
        responses=s.TickerOutput,
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(selectors.market_ticker_get(code=code))


class OrderbookApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="Order book with cumulative depth",
        parameters=[CODE, s.OrderbookInput],
        responses=s.OrderbookOutput,
    )
    def get(self, request: Request, code: str) -> Response:
        params = s.OrderbookInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.market_orderbook_get(code=code, levels=params.validated_data.get("levels")))


class TradesApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="Recent trades, oldest first",
        parameters=[CODE, s.TradesInput],
        responses=s.TradesOutput,
    )
    def get(self, request: Request, code: str) -> Response:
        params = s.TradesInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.market_trades_get(code=code, count=params.validated_data["count"]))


class CandlesApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="Candles for the price chart",
        description="interval: " + "; ".join(f"{k} = {v.label}" for k, v in INTERVALS.items()),
        parameters=[CODE, s.CandlesInput],
        responses=s.CandlesOutput,
    )
    def get(self, request: Request, code: str) -> Response:
        params = s.CandlesInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.market_candles_get(code=code, interval=params.validated_data["interval"]))


class ExchangesBtcApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="BTC on bitFlyer, Binance and OKX in KRW, with the premium vs Upbit",
        description="Each source that fails is marked stale (last good price or null), never an error.",
        responses=s.ExchangesOutput,
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.exchanges_btc_get())


class NewsApi(PublicMarketView):
    @extend_schema(
        tags=TAG,
        summary="Latest bitcoin news, newest first",
        parameters=[s.NewsInput],
        responses=s.NewsItemOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        params = s.NewsInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.news_list(limit=params.validated_data["limit"]))
