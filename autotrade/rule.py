"""The auto-trading decision rule, pure (no Django): the round-trip cost of a book, a session's position and
what one prediction makes a session do (buy, sell or hold, and why). ``autotrade.services`` feeds it the
rows, the live book and the settings; the tests feed it hand-computed cases.

Rule: cost = both fees + the spread factor (``AUTOTRADE_SPREAD_COST_FACTOR``, 0.5: the half-spread) x the
spread relative to the mid; buy ``order_krw`` when predicted return > threshold + cost; sell the position
when predicted return < -(threshold + cost), when the prediction's horizon has passed since the position
was opened and the prediction no longer exceeds threshold + cost (``mlmodel.rule.exit_reason``: the one exit
rule the backtest simulates too), or the price fell to the user's stop; nothing while in the cool-down,
while an order of the session is still open, above the position limit, with auto-trading halted (daily loss
limit) or the kill switch engaged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, Protocol

from mlmodel.rule import HORIZON_EXIT, exit_reason

ZERO = Decimal(0)
RATE_Q = Decimal("0.0000000001")

# The decision's action (the values of autotrade.models.AutoTradeAction).
BUY, SELL, HOLD = "buy", "sell", "hold"


@dataclass(frozen=True)
class Costs:
    best_bid: Decimal
    best_ask: Decimal
    fee_cost: Decimal
    half_spread: Decimal  # the spread part: AUTOTRADE_SPREAD_COST_FACTOR x spread / mid (0.5: half-spread)

    @property
    def total(self) -> Decimal:
        return self.fee_cost + self.half_spread


def book_usable(*, best_bid: Decimal, best_ask: Decimal) -> bool:
    """A book the cost can be read from: both sides priced and not crossed."""
    return best_bid > 0 and best_ask > 0 and best_ask >= best_bid


def costs_of(*, best_bid: Decimal, best_ask: Decimal, fee_rate: Decimal, spread_factor: Decimal) -> Costs:
    """Both fees plus ``spread_factor`` x the spread relative to the mid: what a buy-now, sell-later round
    trip costs before the price has to move at all. The book must be usable (``book_usable``)."""
    mid = (best_bid + best_ask) / 2
    half = ((best_ask - best_bid) * spread_factor / mid).quantize(RATE_Q)
    return Costs(
        best_bid=best_bid, best_ask=best_ask, fee_cost=(2 * fee_rate).quantize(RATE_Q), half_spread=half
    )


@dataclass(frozen=True)
class SessionPosition:
    volume: Decimal  # coin bought by this session and not sold yet (nor sold by the user by hand)
    cost: Decimal  # KRW paid for it, fees included (average cost)
    open_orders: int
    manual_reduced: Decimal = ZERO  # coin taken off the position so far because the account held less
    opened_at: dt.datetime | None = None  # when the buy that opened this position was decided

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.volume if self.volume > 0 else None

    def cut_to(self, volume: Decimal) -> SessionPosition:
        """This position reduced to ``volume`` at the same average cost (a manual sale took the rest)."""
        volume = max(volume, ZERO)
        if volume >= self.volume:
            return self
        cut = self.volume - volume
        cost = self.cost * volume / self.volume if volume > 0 else ZERO
        return SessionPosition(
            volume=volume,
            cost=cost,
            open_orders=self.open_orders,
            manual_reduced=self.manual_reduced + cut,
            opened_at=self.opened_at if volume > 0 else None,
        )


class SessionTerms(Protocol):
    """What the rule reads of a session (an ``AutoTradeSession`` row has all of it)."""

    @property
    def threshold(self) -> Decimal: ...
    @property
    def order_krw(self) -> Decimal: ...
    @property
    def max_position_krw(self) -> Decimal | None: ...
    @property
    def stop_loss(self) -> Decimal | None: ...
    @property
    def cooldown_s(self) -> int: ...
    @property
    def last_order_at(self) -> dt.datetime | None: ...


class ProfileLimits(Protocol):
    """What the rule reads of the user's trading profile (a ``TradingProfile`` row has all of it)."""

    @property
    def auto_trading_halted(self) -> bool: ...
    @property
    def halted_reason(self) -> str: ...
    @property
    def max_position_krw(self) -> Decimal | None: ...


class Decision(NamedTuple):
    action: str  # BUY, SELL or HOLD
    reason: str  # a code the page translates (signal_buy, cooldown, kill_switch, ...)
    detail: str  # the figures behind it, for the log


def decide(
    *,
    session: SessionTerms,
    profile: ProfileLimits | None,
    predicted_return: Decimal,
    costs: Costs,
    position: SessionPosition,
    now: dt.datetime,
    kill_switch: bool,
    min_order_krw: Decimal,
    horizon_s: float | None = None,
) -> Decision:
    """What one prediction makes the session do. ``horizon_s`` is the prediction's horizon: a position held
    that long is sold once the model would not buy it now (``mlmodel.rule.exit_reason``). The kill switch's
    detail is left empty: the caller words it in the user's language."""
    edge = session.threshold + costs.total
    if kill_switch:
        return Decision(HOLD, "kill_switch", "")
    if profile is not None and profile.auto_trading_halted:
        return Decision(HOLD, "halted", profile.halted_reason)
    if position.open_orders:
        return Decision(HOLD, "order_in_flight", "")
    if session.stop_loss is not None and position.volume > 0 and position.avg_cost is not None:
        stop_price = position.avg_cost * (1 - session.stop_loss)
        if costs.best_bid <= stop_price:
            return Decision(SELL, "stop_loss", f"bid {costs.best_bid} <= stop {stop_price:.8f}")
    cooling = session.last_order_at is not None and now < session.last_order_at + dt.timedelta(
        seconds=session.cooldown_s
    )
    if predicted_return > edge:
        limit = session.max_position_krw if session.max_position_krw is not None else session.order_krw
        if profile is not None and profile.max_position_krw is not None:
            limit = min(limit, profile.max_position_krw)
        held = position.volume * costs.best_bid
        if held + session.order_krw > limit:
            return Decision(
                HOLD, "position_limit", f"held {held:.0f} + {session.order_krw:.0f} > {limit:.0f}"
            )
        if cooling:
            return Decision(HOLD, "cooldown", "")
        return Decision(BUY, "signal_buy", f"{predicted_return} > {edge}")
    held_s = (now - position.opened_at).total_seconds() if position.opened_at is not None else None
    why = exit_reason(predicted_return=predicted_return, edge=edge, held_s=held_s, horizon_s=horizon_s)
    if why is not None:
        if position.volume <= 0:
            return Decision(HOLD, "no_position", "")
        if position.volume * costs.best_bid < min_order_krw:
            return Decision(HOLD, "under_min_total", "")
        if cooling:
            return Decision(HOLD, "cooldown", "")
        if why == HORIZON_EXIT:
            return Decision(
                SELL, why, f"held {held_s:.0f} s >= {horizon_s:g} s; {predicted_return} <= {edge}"
            )
        return Decision(SELL, why, f"{predicted_return} < -{edge}")
    return Decision(HOLD, "below_threshold", "")
