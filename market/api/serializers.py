"""Input/output serializers of the public market-data API (outputs document the JSON for the schema)."""

from __future__ import annotations

from rest_framework import serializers

from market.selectors import CANDLE_INTERVALS


class MarketOutput(serializers.Serializer):
    market = serializers.CharField(help_text="e.g. KRW-BTC")
    korean_name = serializers.CharField()
    english_name = serializers.CharField()
    warning = serializers.BooleanField(help_text="Upbit's investment warning flag")


class TickerOutput(serializers.Serializer):
    market = serializers.CharField()
    ts = serializers.IntegerField(help_text="epoch ms")
    price = serializers.FloatField()
    open = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    prev_close = serializers.FloatField(allow_null=True)
    change = serializers.ChoiceField(choices=["RISE", "EVEN", "FALL"], allow_null=True)
    change_price = serializers.FloatField(allow_null=True, help_text="signed, vs previous close")
    change_rate = serializers.FloatField(allow_null=True, help_text="signed ratio, 0.01 = 1 %")
    volume_24h = serializers.FloatField(allow_null=True)
    value_24h = serializers.FloatField(allow_null=True)
    acc_volume = serializers.FloatField(allow_null=True)
    acc_value = serializers.FloatField(allow_null=True)


class OrderbookOutput(serializers.Serializer):
    market = serializers.CharField()
    ts = serializers.IntegerField()
    asks = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="[price, size, cumulative size], best (lowest) first",
    )
    bids = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="[price, size, cumulative size], best (highest) first",
    )
    total_ask_size = serializers.FloatField(allow_null=True)
    total_bid_size = serializers.FloatField(allow_null=True)
    spread = serializers.FloatField(allow_null=True)
    mid = serializers.FloatField(allow_null=True)


class TradeOutput(serializers.Serializer):
    ts = serializers.IntegerField()
    price = serializers.FloatField()
    volume = serializers.FloatField()
    side = serializers.CharField(help_text="BID (buyer-initiated) or ASK (seller-initiated)")
    sid = serializers.IntegerField(allow_null=True)


class TradesOutput(serializers.Serializer):
    market = serializers.CharField()
    trades = TradeOutput(many=True, help_text="oldest first")


class CandleOutput(serializers.Serializer):
    time = serializers.IntegerField(help_text="candle start, epoch seconds UTC")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    value = serializers.FloatField()


class CandlesOutput(serializers.Serializer):
    market = serializers.CharField()
    interval = serializers.CharField()
    description = serializers.CharField()
    candles = CandleOutput(many=True)


class CandlesInput(serializers.Serializer):
    interval = serializers.ChoiceField(choices=list(CANDLE_INTERVALS), default="1m")


class TradesInput(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=500, default=50)


class OrderbookInput(serializers.Serializer):
    levels = serializers.IntegerField(min_value=1, max_value=30, required=False)


class UpbitPriceOutput(serializers.Serializer):
    market = serializers.CharField()
    price = serializers.CharField(allow_null=True, help_text="KRW, decimal string")
    as_of = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()


class FxOutput(serializers.Serializer):
    source = serializers.CharField()
    url = serializers.CharField()
    usd_krw = serializers.CharField(allow_null=True)
    jpy_krw = serializers.CharField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()


class UsdtOutput(serializers.Serializer):
    basis = serializers.CharField(
        allow_null=True, help_text="upbit:KRW-USDT or the 1 USDT = 1 USD assumption"
    )
    krw = serializers.CharField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()


class ExchangePriceOutput(serializers.Serializer):
    exchange = serializers.CharField()
    name = serializers.CharField()
    symbol = serializers.CharField()
    currency = serializers.CharField()
    price = serializers.CharField(allow_null=True, help_text="in the exchange's quote currency")
    price_krw = serializers.CharField(allow_null=True)
    premium_pct = serializers.CharField(allow_null=True, help_text="(upbit / exchange - 1) * 100")
    as_of = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="true: the source failed; price is the last good one or null")


class ExchangesOutput(serializers.Serializer):
    upbit = UpbitPriceOutput()
    fx = FxOutput()
    usdt = UsdtOutput()
    exchanges = ExchangePriceOutput(many=True)
    premium_formula = serializers.CharField()
    generated_at = serializers.DateTimeField()


class NewsItemOutput(serializers.Serializer):
    title = serializers.CharField()
    link = serializers.URLField()
    source = serializers.CharField()
    summary = serializers.CharField()
    published_at = serializers.DateTimeField()


class NewsInput(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=30)
