"""Trading state: per-user profile (mode, risk limits), orders and fills, scheduled orders, the paper
exchange's virtual accounts, per-user positions (realized P&L) and the global kill switch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

MONEY = {"max_digits": 30, "decimal_places": 8}
ZERO = Decimal(0)


class TradingMode(models.TextChoices):
    PAPER = "paper", _("Paper")
    LIVE = "live", pgettext_lazy("trading mode", "Live")  # not the "Live" (real-time) of the chart


class Side(models.TextChoices):
    BID = "bid", _("Buy")
    ASK = "ask", _("Sell")


class OrdType(models.TextChoices):
    LIMIT = "limit", _("Limit")
    PRICE = "price", _("Market buy (KRW amount)")
    MARKET = "market", _("Market sell (volume)")


class OrderSource(models.TextChoices):
    MANUAL = "manual", _("Manual")
    SCHEDULED = "scheduled", _("Scheduled")
    AUTO = "auto", _("Auto-trading")


class OrderState(models.TextChoices):
    PENDING = "pending", _("Pending")  # row written, exchange outcome not known yet
    OPEN = "open", _("Open")  # on the exchange's book (Upbit wait/watch)
    DONE = "done", _("Filled")
    CANCELLED = "cancelled", _("Cancelled")  # with or without partial fills
    REJECTED = "rejected", _("Rejected")  # the exchange refused it, or it never reached the exchange


OPEN_ORDER_STATES = (OrderState.PENDING, OrderState.OPEN)


class TradingProfile(models.Model):
    """One per user: trading mode (paper by default), risk limits and the auto-trading halt flag."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trading_profile"
    )
    mode = models.CharField(_("mode"), max_length=8, choices=TradingMode.choices, default=TradingMode.PAPER)
    live_confirmed_at = models.DateTimeField(_("live trading confirmed at"), null=True, blank=True)
    max_order_krw = models.DecimalField(_("maximum order (KRW)"), null=True, blank=True, **MONEY)
    max_position_krw = models.DecimalField(
        _("maximum position per coin (KRW)"), null=True, blank=True, **MONEY
    )
    daily_loss_limit_krw = models.DecimalField(_("daily loss limit (KRW)"), null=True, blank=True, **MONEY)
    auto_trading_halted = models.BooleanField(_("auto-trading halted"), default=False)
    halted_reason = models.CharField(_("halt reason"), max_length=200, blank=True)
    halted_at = models.DateTimeField(_("halted at"), null=True, blank=True)
    daily_report = models.BooleanField(_("daily e-mail report"), default=False)
    last_report_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("trading profile")
        verbose_name_plural = _("trading profiles")

    def __str__(self) -> str:
        return f"{self.user_id} ({self.mode})"

    @staticmethod
    def defaults_for(user: Any) -> dict[str, Any]:
        """A new profile's fields besides the model defaults (paper mode, no limits): the daily report follows
        the e-mail notifications choice made at sign-up."""
        return {"daily_report": bool(getattr(user, "email_opt_in", False))}


class Order(models.Model):
    """An order as this application knows it. Created ``pending`` before the exchange is called, so a
    crash between the two is found again by reconciliation through ``idempotency_key`` (the Upbit
    identifier)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders")
    mode = models.CharField(max_length=8, choices=TradingMode.choices)
    market = models.CharField(max_length=20)
    side = models.CharField(max_length=3, choices=Side.choices)
    ord_type = models.CharField(max_length=8, choices=OrdType.choices)
    # limit: unit price; price (market buy): KRW total to spend; market sell: null.
    price = models.DecimalField(null=True, blank=True, **MONEY)
    volume = models.DecimalField(null=True, blank=True, **MONEY)
    source = models.CharField(max_length=10, choices=OrderSource.choices, default=OrderSource.MANUAL)
    state = models.CharField(max_length=10, choices=OrderState.choices, default=OrderState.PENDING)
    idempotency_key = models.CharField(max_length=64)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    exchange_uuid = models.CharField(max_length=64, blank=True, db_index=True)
    executed_volume = models.DecimalField(default=ZERO, **MONEY)
    executed_funds = models.DecimalField(default=ZERO, **MONEY)
    paid_fee = models.DecimalField(default=ZERO, **MONEY)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # Paper orders: the order book the fill was priced on ("live": the collector's stream; "rest": fetched
    # because the live one was missing or older than PAPER_BOOK_MAX_AGE_MS) and its age; blank for live.
    book_source = models.CharField(max_length=4, blank=True, default="")
    book_age_ms = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="trading_order_unique_user_key"),
        ]
        indexes = [models.Index(fields=["state", "mode"], name="trading_order_state_mode")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.market} {self.ord_type} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_ORDER_STATES

    @property
    def avg_price(self) -> Decimal | None:
        if self.executed_volume > 0:
            return (self.executed_funds / self.executed_volume).quantize(Decimal("0.00000001"))
        return None


class Fill(models.Model):
    """One execution of an order (Upbit ``trades[]``), with the fee charged in KRW and the realized P&L
    it produced (sells only)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    trade_uuid = models.CharField(max_length=64)
    price = models.DecimalField(**MONEY)
    volume = models.DecimalField(**MONEY)
    funds = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY)
    realized_pnl = models.DecimalField(default=ZERO, **MONEY)
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["executed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "trade_uuid"], name="trading_fill_unique_trade")
        ]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.price}"


class Position(models.Model):
    """What our own fills say a user holds of one currency in one mode: volume, average buy price and the
    realized P&L so far (average-cost method, fees included)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="positions")
    mode = models.CharField(max_length=8, choices=TradingMode.choices)
    currency = models.CharField(max_length=16)
    volume = models.DecimalField(default=ZERO, **MONEY)
    avg_buy_price = models.DecimalField(default=ZERO, **MONEY)
    realized_pnl = models.DecimalField(default=ZERO, **MONEY)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "mode", "currency"], name="trading_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.currency} {self.volume} @ {self.avg_buy_price} ({self.mode})"


class TriggerType(models.TextChoices):
    TIME = "time", _("At a time")
    PRICE_ABOVE = "price_above", _("When the price rises to")
    PRICE_BELOW = "price_below", _("When the price falls to")


class ScheduledState(models.TextChoices):
    PENDING = "pending", _("Pending")
    FIRING = "firing", _("Firing")  # claimed by one worker; the order is being placed
    FIRED = "fired", _("Fired")
    FILLED = "filled", _("Filled")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    EXPIRED = "expired", _("Expired")


class ScheduledOrder(models.Model):
    """An order to place later: at a time, or when the last price crosses a level. Lives in the database
    (survives restarts); fired exactly once by ``scheduled_orders_fire_due``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scheduled_orders"
    )
    mode = models.CharField(max_length=8, choices=TradingMode.choices)
    market = models.CharField(max_length=20)
    side = models.CharField(max_length=3, choices=Side.choices)
    ord_type = models.CharField(max_length=8, choices=OrdType.choices)
    price = models.DecimalField(null=True, blank=True, **MONEY)
    volume = models.DecimalField(null=True, blank=True, **MONEY)
    trigger_type = models.CharField(max_length=12, choices=TriggerType.choices)
    trigger_at = models.DateTimeField(null=True, blank=True, db_index=True)
    trigger_price = models.DecimalField(null=True, blank=True, **MONEY)
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=ScheduledState.choices, default=ScheduledState.PENDING)
    failure_reason = models.CharField(max_length=300, blank=True)
    client_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: unique only when given
    # The idempotency key of the order it places: fixed at creation, so a re-fire after a crash can only
    # find the same order again, never place a second one.
    fire_key = models.CharField(max_length=64, unique=True)
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="scheduled"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "client_key"], name="trading_scheduled_unique_client_key"
            ),
        ]
        indexes = [models.Index(fields=["state", "trigger_type"], name="trading_sched_state_trigger")]

    def __str__(self) -> str:
        return f"scheduled #{self.pk} {self.side} {self.market} ({self.state})"


class PaperBalance(models.Model):
    """The paper exchange's virtual account of one user in one currency (like an Upbit /accounts row)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="paper_balances"
    )
    currency = models.CharField(max_length=16)
    balance = models.DecimalField(default=ZERO, **MONEY)
    locked = models.DecimalField(default=ZERO, **MONEY)
    avg_buy_price = models.DecimalField(default=ZERO, **MONEY)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "currency"], name="trading_paperbalance_unique")
        ]

    def __str__(self) -> str:
        return f"{self.currency} {self.balance} (+{self.locked} locked)"


class PaperOrder(models.Model):
    """An order on the paper exchange (its own book of record, mirroring an Upbit order object)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="paper_orders")
    uuid = models.CharField(max_length=36, unique=True)
    identifier = models.CharField(max_length=64)
    market = models.CharField(max_length=20)
    side = models.CharField(max_length=3, choices=Side.choices)
    ord_type = models.CharField(max_length=8, choices=OrdType.choices)
    price = models.DecimalField(null=True, blank=True, **MONEY)
    volume = models.DecimalField(null=True, blank=True, **MONEY)
    state = models.CharField(max_length=8, default="wait")  # Upbit vocabulary: wait / done / cancel
    remaining_volume = models.DecimalField(null=True, blank=True, **MONEY)
    executed_volume = models.DecimalField(default=ZERO, **MONEY)
    executed_funds = models.DecimalField(default=ZERO, **MONEY)
    reserved_fee = models.DecimalField(default=ZERO, **MONEY)
    remaining_fee = models.DecimalField(default=ZERO, **MONEY)
    paid_fee = models.DecimalField(default=ZERO, **MONEY)
    locked = models.DecimalField(default=ZERO, **MONEY)
    # Public trades at or before this time (epoch ms) were already considered for this resting order.
    trades_seen_ms = models.BigIntegerField(default=0)
    # The order book snapshot (its epoch ms) this order last traded against; only a newer book can fill it.
    book_seen_ms = models.BigIntegerField(default=0)
    # The book the order was placed against: "live" (the collector's stream) or "rest", and its age (ms).
    book_source = models.CharField(max_length=4, blank=True, default="")
    book_age_ms = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "identifier"], name="trading_paperorder_unique_identifier"
            ),
        ]
        indexes = [models.Index(fields=["state", "market"], name="trading_paperorder_open")]

    def __str__(self) -> str:
        return f"paper {self.side} {self.market} {self.ord_type} ({self.state})"


class PaperTrade(models.Model):
    """The paper ledger: one fill of a paper order."""

    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="trades")
    uuid = models.CharField(max_length=36, unique=True)
    price = models.DecimalField(**MONEY)
    volume = models.DecimalField(**MONEY)
    funds = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY)
    is_maker = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.price}"


class TradingSwitch(models.Model):
    """The global kill switch (a singleton, pk=1). Engaged: every open order is cancelled, auto-trading
    stops for everyone and new orders are refused."""

    engaged = models.BooleanField(_("kill switch engaged"), default=False)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    engaged_at = models.DateTimeField(null=True, blank=True)
    engaged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("trading kill switch")
        verbose_name_plural = _("trading kill switch")

    def __str__(self) -> str:
        return str(_("Kill switch: ENGAGED") if self.engaged else _("Kill switch: off"))
