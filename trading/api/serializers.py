"""Input and output serializers of the trading API. Money is a decimal *string* on the way out and is parsed
as ``Decimal`` on the way in (JSON numbers included, never through float)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from core.api import AwareDateTimeField, StrictDecimalField
from trading.models import (
    OrderSource,
    OrderState,
    OrdType,
    ScheduledState,
    Side,
    TradingMode,
    TriggerType,
)

POSITIVE = Decimal("0.00000001")


class Money(StrictDecimalField):
    """A Decimal, written without exponent or needless zeros ("5000", "0.0012"); read from ASCII digits only
    (core.api.StrictDecimalField)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 30)
        kwargs.setdefault("decimal_places", 8)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str | None:
        if value is None:
            return None
        d = Decimal(value)
        return "0" if d == 0 else format(d.normalize(), "f")


def MoneyIn(**kwargs: Any) -> Money:  # noqa: N802 - reads like a field class
    kwargs.setdefault("min_value", POSITIVE)
    kwargs.setdefault("signed", False)  # '-5000' is refused as written, not only for being below the minimum
    return Money(**kwargs)


# -- inputs ------------------------------------------------------------------------------------------------

_MARKET_HELP = _("A KRW market code such as KRW-BTC.")
_KEY_HELP = _(
    "Optional client idempotency key (1-64 of A-Z a-z 0-9 _ - : .); the Idempotency-Key header wins."
)


class BuyInput(serializers.Serializer):
    market = serializers.CharField(max_length=20, help_text=_MARKET_HELP)
    amount_krw = MoneyIn(help_text=_("KRW to spend (fees come on top); at least 5,000."))
    client_order_id = serializers.CharField(max_length=64, required=False, help_text=_KEY_HELP)


class SellInput(serializers.Serializer):
    market = serializers.CharField(max_length=20, help_text=_MARKET_HELP)
    volume = MoneyIn(help_text=_("Volume of the coin to sell (at most 8 decimals)."))
    client_order_id = serializers.CharField(max_length=64, required=False, help_text=_KEY_HELP)


class LimitInput(serializers.Serializer):
    market = serializers.CharField(max_length=20, help_text=_MARKET_HELP)
    side = serializers.ChoiceField(choices=Side.choices)
    price = MoneyIn(help_text=_("Unit price in KRW, on the market's tick size."))
    volume = MoneyIn(help_text=_("Volume (at most 8 decimals)."))
    client_order_id = serializers.CharField(max_length=64, required=False, help_text=_KEY_HELP)


class ModeInput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TradingMode.choices)
    confirm = serializers.BooleanField(required=False, default=False)
    confirm_text = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=20,
        help_text=_('Type "LIVE" to switch to live trading.'),
    )


class RiskLimitsInput(serializers.Serializer):
    max_order_krw = MoneyIn(required=False, allow_null=True)
    max_position_krw = MoneyIn(required=False, allow_null=True)
    daily_loss_limit_krw = MoneyIn(required=False, allow_null=True)
    daily_report = serializers.BooleanField(required=False)


class ScheduledOrderInput(serializers.Serializer):
    market = serializers.CharField(max_length=20, help_text=_MARKET_HELP)
    side = serializers.ChoiceField(choices=Side.choices)
    ord_type = serializers.ChoiceField(
        choices=OrdType.choices,
        help_text=_("price: market buy for a KRW amount; market: market sell; limit."),
    )
    price = MoneyIn(
        required=False,
        allow_null=True,
        help_text=_("limit: unit price; price (market buy): the KRW amount to spend."),
    )
    volume = MoneyIn(required=False, allow_null=True)
    trigger_type = serializers.ChoiceField(choices=TriggerType.choices)
    trigger_at = AwareDateTimeField(
        required=False, allow_null=True, help_text=_("ISO 8601 with a time zone; must be in the future.")
    )
    trigger_price = MoneyIn(required=False, allow_null=True)
    expires_at = AwareDateTimeField(required=False, allow_null=True)
    client_order_id = serializers.CharField(max_length=64, required=False, help_text=_KEY_HELP)


class OrderListFilter(serializers.Serializer):
    state = serializers.ChoiceField(choices=[*OrderState.choices, ("open", "open")], required=False)
    mode = serializers.ChoiceField(choices=TradingMode.choices, required=False)
    source = serializers.ChoiceField(choices=OrderSource.choices, required=False)
    market = serializers.CharField(max_length=20, required=False)


class ScheduledListFilter(serializers.Serializer):
    state = serializers.ChoiceField(choices=ScheduledState.choices, required=False)


# -- outputs -----------------------------------------------------------------------------------------------


class FillOutput(serializers.Serializer):
    price = Money()
    volume = Money()
    funds = Money()
    fee = Money()
    realized_pnl = Money()
    executed_at = serializers.DateTimeField()


class OrderOutput(serializers.Serializer):
    id = serializers.IntegerField()
    mode = serializers.ChoiceField(choices=TradingMode.choices)
    market = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    ord_type = serializers.ChoiceField(choices=OrdType.choices)
    price = Money(allow_null=True)
    volume = Money(allow_null=True)
    source = serializers.ChoiceField(choices=OrderSource.choices)
    state = serializers.ChoiceField(choices=OrderState.choices)
    client_order_id = serializers.CharField(source="idempotency_key")
    exchange_uuid = serializers.CharField()
    executed_volume = Money()
    executed_funds = Money()
    avg_price = Money(allow_null=True)
    paid_fee = Money()
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    book_source = serializers.CharField(
        help_text='Paper orders: the order book the fills were priced on, "live" (the collector\'s stream) '
        'or "rest" (fetched because the live one was older than PAPER_BOOK_MAX_AGE_MS); empty for live.'
    )
    book_age_ms = serializers.IntegerField(allow_null=True, help_text="Paper orders: that book's age (ms).")
    fills = FillOutput(many=True)


class ScheduledOrderOutput(serializers.Serializer):
    id = serializers.IntegerField()
    mode = serializers.ChoiceField(choices=TradingMode.choices)
    market = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    ord_type = serializers.ChoiceField(choices=OrdType.choices)
    price = Money(allow_null=True)
    volume = Money(allow_null=True)
    trigger_type = serializers.ChoiceField(choices=TriggerType.choices)
    trigger_at = serializers.DateTimeField(allow_null=True)
    trigger_price = Money(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(choices=ScheduledState.choices)
    failure_reason = serializers.CharField()
    order_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    fired_at = serializers.DateTimeField(allow_null=True)


class BalanceOutput(serializers.Serializer):
    currency = serializers.CharField()
    balance = Money()
    locked = Money()
    avg_buy_price = Money()


class HoldingOutput(serializers.Serializer):
    currency = serializers.CharField()
    market = serializers.CharField()
    balance = Money()
    locked = Money()
    volume = Money()
    avg_buy_price = Money()
    price = Money(allow_null=True)
    value_krw = Money(allow_null=True)
    cost_krw = Money()
    unrealized_pnl = Money(allow_null=True)
    unrealized_pnl_rate = Money(allow_null=True)


class PortfolioOutput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TradingMode.choices)
    krw_balance = Money()
    krw_locked = Money()
    holdings = HoldingOutput(many=True)
    total_assets_krw = Money()
    invested_krw = Money()
    realized_pnl = Money()
    unrealized_pnl = Money()
    pnl_today = Money(allow_null=True)
    pnl_total = Money(help_text="Realized + unrealized P&L, fees included, on the same prices as the total.")
    prices_available = serializers.BooleanField()
    as_of = serializers.DateTimeField()


class ProfileOutput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TradingMode.choices)
    live_confirmed_at = serializers.DateTimeField(allow_null=True)
    has_exchange_keys = serializers.BooleanField()
    auto_trading_halted = serializers.BooleanField()
    halted_reason = serializers.CharField()
    kill_switch_engaged = serializers.BooleanField()


class RiskLimitsOutput(serializers.Serializer):
    max_order_krw = Money(allow_null=True)
    max_position_krw = Money(allow_null=True)
    daily_loss_limit_krw = Money(allow_null=True)
    daily_report = serializers.BooleanField()
    auto_trading_halted = serializers.BooleanField()
    halted_reason = serializers.CharField()


# Envelopes: every response carries the account's current ``mode``.


class ModeEnvelope(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TradingMode.choices)


class OrderEnvelope(ModeEnvelope):
    order = OrderOutput()


class OrderPage(ModeEnvelope):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = OrderOutput(many=True)


class ScheduledEnvelope(ModeEnvelope):
    scheduled_order = ScheduledOrderOutput()


class ScheduledPage(ModeEnvelope):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ScheduledOrderOutput(many=True)


class BalancesEnvelope(ModeEnvelope):
    balances = BalanceOutput(many=True)


class PortfolioEnvelope(ModeEnvelope):
    portfolio = PortfolioOutput()


class ProfileEnvelope(ModeEnvelope):
    profile = ProfileOutput()


class RiskLimitsEnvelope(ModeEnvelope):
    risk_limits = RiskLimitsOutput()


class ReportEnvelope(ModeEnvelope):
    sent_to = serializers.CharField()


class ErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorEnvelope(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TradingMode.choices, required=False)
    error = ErrorBody()
