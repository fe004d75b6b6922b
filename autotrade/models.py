"""Auto-trading state: the user's kept settings (the threshold the next start uses), one session per user and
market (threshold, order size, limits) and the log of every decision it took on a prediction. The tables of
the sessions and decisions keep the names they had inside the trading app (``trading_autotradesession``,
``trading_autotradedecision``): the models moved, the rows did not."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

RATE = {"max_digits": 20, "decimal_places": 10}
MONEY_FIELDS = {"max_digits": 30, "decimal_places": 8}


DEFAULT_THRESHOLD = Decimal("0.0005")


class AutoTradeSettings(models.Model):
    """A user's auto-trading choices kept while nothing runs: the profit threshold (fraction) the next start
    and the /trade page use. Written on the first choice; a user without a row has the defaults."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="autotrade_settings"
    )
    threshold = models.DecimalField(_("profit threshold (fraction)"), default=DEFAULT_THRESHOLD, **RATE)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("auto-trading settings")
        verbose_name_plural = _("auto-trading settings")

    def __str__(self) -> str:
        return f"auto-trading settings of user {self.user_id}"


class AutoTradeState(models.TextChoices):
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")


class AutoTradeSession(models.Model):
    """A user's auto-trading on one market, in the mode it was started in. ``running_key`` equals the
    market while running and is NULL once stopped, so (user, running_key) is unique: at most one running
    session per user and market on every database (no partial indexes needed)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="autotrade_sessions"
    )
    market = models.CharField(_("market"), max_length=20)
    mode = models.CharField(_("mode"), max_length=8)
    state = models.CharField(max_length=8, choices=AutoTradeState.choices, default=AutoTradeState.RUNNING)
    running_key = models.CharField(max_length=20, null=True, blank=True)  # noqa: DJ001 - NULL = not running
    threshold = models.DecimalField(_("profit threshold (fraction)"), **RATE)
    order_krw = models.DecimalField(_("order size (KRW)"), **MONEY_FIELDS)
    max_position_krw = models.DecimalField(_("position limit (KRW)"), null=True, blank=True, **MONEY_FIELDS)
    stop_loss = models.DecimalField(_("stop loss (fraction below cost)"), null=True, blank=True, **RATE)
    cooldown_s = models.PositiveIntegerField(_("cool-down (s)"), default=10)
    last_prediction_ts = models.BigIntegerField(default=0)
    last_order_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "trading_autotradesession"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "running_key"], name="trading_autotrade_one_running"),
        ]
        indexes = [models.Index(fields=["market", "state"], name="trading_autotrade_market_state")]

    def __str__(self) -> str:
        return f"auto {self.market} user {self.user_id} ({self.state})"

    @property
    def is_running(self) -> bool:
        return self.state == AutoTradeState.RUNNING


class AutoTradeAction(models.TextChoices):
    BUY = "buy", _("Buy")
    SELL = "sell", _("Sell")
    HOLD = "hold", _("Hold")


class AutoTradeOutcome(models.TextChoices):
    NONE = "none", _("No order")
    PENDING = "pending", _("Order being placed")
    PLACED = "placed", _("Order placed")
    REJECTED = "rejected", _("Order refused")


class AutoTradeDecision(models.Model):
    """What a session did with one prediction, and why (every prediction is logged, trades or not)."""

    session = models.ForeignKey(AutoTradeSession, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    market = models.CharField(max_length=20)
    prediction_ts = models.BigIntegerField()
    predicted_return = models.DecimalField(**RATE)
    horizon_s = models.FloatField(null=True, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    best_bid = models.DecimalField(null=True, blank=True, **MONEY_FIELDS)
    best_ask = models.DecimalField(null=True, blank=True, **MONEY_FIELDS)
    threshold = models.DecimalField(**RATE)
    fee_cost = models.DecimalField(**RATE)  # both fees
    # The spread part of the cost: AUTOTRADE_SPREAD_COST_FACTOR x spread / mid (named for the default, 0.5).
    half_spread = models.DecimalField(**RATE)
    cost = models.DecimalField(**RATE)  # round-trip cost = both fees + the spread part
    action = models.CharField(max_length=4, choices=AutoTradeAction.choices)
    reason = models.CharField(max_length=30)
    detail = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=8, choices=AutoTradeOutcome.choices, default=AutoTradeOutcome.NONE)
    idempotency_key = models.CharField(max_length=64, blank=True)
    order_krw = models.DecimalField(null=True, blank=True, **MONEY_FIELDS)
    volume = models.DecimalField(null=True, blank=True, **MONEY_FIELDS)
    # Coin taken off the session's position before this decision because the account held less than the
    # session's own fills (the user sold some by hand); NULL: no cut. Replayed by session_position.
    manual_adjust_volume = models.DecimalField(
        _("position reduced by a manual trade"), null=True, blank=True, **MONEY_FIELDS
    )
    order = models.ForeignKey(
        "trading.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "trading_autotradedecision"
        ordering = ["-prediction_ts", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "prediction_ts"], name="trading_autodecision_once"),
        ]
        indexes = [models.Index(fields=["user", "-created_at"], name="trading_autodecision_user")]

    def __str__(self) -> str:
        return f"{self.action} {self.market} ({self.reason})"

    @property
    def edge(self) -> Decimal:
        return self.threshold + self.cost
