"""Auto-trading writes: start, change, stop (one user's sessions, or everyone's on a halt), and the judging of
each prediction of the ML worker for every running session of its market (the pure rule is
``autotrade.rule``).

Every evaluated prediction leaves one ``AutoTradeDecision`` (unique per session and prediction, so a
redelivered task changes nothing) and is pushed to ``user.<id>``. Orders go through
``order_place(source="auto")`` with the key ``auto-<session>-<prediction ts>`` *outside* the decision's
transaction, so the pending order row is committed before the exchange is called, as order_place requires.

The session's position is its own fills, but never more than the account holds of the coin: when the user
sold some of it by other means (a manual or scheduled order), the evaluation cuts the position down to the
balance and records the cut on that prediction's decision (``manual_adjust_volume``); the average cost
stays the session's own, and coin the user buys by hand never joins the session's position.

Trading reaches auto-trading through ``settings.AUTO_TRADING_HALT_HOOKS`` (``autotrade_on_halt``: the daily
loss limit or the kill switch stops the sessions); the ML worker's predictions arrive through
``settings.MESSAGE_SUBSCRIBERS["mlmodel.prediction"]`` (the ``autotrade.tasks.autotrade_on_prediction`` task).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.selectors import exchange_credential_status
from autotrade import rule
from autotrade.messages import AutoDecisionEvent, AutoSessionEvent
from autotrade.models import (
    AutoTradeAction,
    AutoTradeDecision,
    AutoTradeOutcome,
    AutoTradeSession,
    AutoTradeSettings,
    AutoTradeState,
)
from autotrade.rule import ZERO, Costs, SessionPosition
from autotrade.selectors import (
    MAX_THRESHOLD,
    VOLUME_Q,
    autotrade_threshold_get,
    decision_event_data,
    session_event_data,
    session_position,
)
from core.errors import ApplicationError, Conflict, NotFound, ValidationFailed
from market.upbit.protocol import is_krw_market
from mlmodel.selectors import model_active
from trading import errors, marketdata
from trading.exchanges import exchange_for
from trading.models import OPEN_ORDER_STATES, Order, OrderSource, OrdType, Side, TradingProfile
from trading.selectors import balances_get, kill_switch_engaged
from trading.services.orders import order_cancel, order_place
from trading.services.profiles import auto_trading_resume, trading_profile_ensure
from trading.services.realtime import user_event_publish

logger = logging.getLogger(__name__)
RATE_Q = rule.RATE_Q
DEFAULT_COOLDOWN_S = 10
MAX_PREDICTION_AGE_S = 30.0  # a prediction that waited longer than this in the queue is not traded on
# Older than this, a dropped prediction was queued before the workers last stopped (drained at start-up): an
# info line, not a warning that the queue lags now.
BACKLOG_PREDICTION_AGE_S = 600.0
MAX_SPREAD_COST_FACTOR = Decimal(2)


def _fee_rate() -> Decimal:
    return settings.UPBIT_FEE_RATE


def spread_cost_factor() -> Decimal:
    """``AUTOTRADE_SPREAD_COST_FACTOR``: the share of the relative spread counted as cost (0.5 = half-spread,
    1.0 = the full spread a market round trip pays); 0 to 2, anything else is a configuration error."""
    raw = settings.AUTOTRADE_SPREAD_COST_FACTOR
    try:
        factor = raw if isinstance(raw, Decimal) else Decimal(str(raw).strip())
    except (InvalidOperation, ValueError, TypeError):
        factor = Decimal("NaN")
    if not factor.is_finite() or not (ZERO <= factor <= MAX_SPREAD_COST_FACTOR):
        raise ImproperlyConfigured(
            f"AUTOTRADE_SPREAD_COST_FACTOR must be a number between 0 and 2, not {raw!r}."
        )
    return factor


def _dec(value: Any, *, what: str) -> Decimal:
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationFailed(_("%(what)s must be a number.") % {"what": what}, code="invalid") from None
    if not d.is_finite():
        raise ValidationFailed(_("%(what)s must be a number.") % {"what": what}, code="invalid")
    return d


def _validate_threshold(threshold: Decimal) -> Decimal:
    if threshold < 0 or threshold > MAX_THRESHOLD:
        raise ValidationFailed(_("The profit threshold must be between 0% and 5%."), code="invalid_threshold")
    return threshold.quantize(RATE_Q)


def autotrade_start(
    *,
    user: Any,
    market: str,
    threshold: Decimal | None = None,
    order_krw: Decimal,
    cooldown_s: int | None = None,
    max_position_krw: Decimal | None = None,
    stop_loss: Decimal | None = None,
) -> AutoTradeSession:
    """Start auto-trading ``market`` for ``user`` in the user's current mode (paper for new accounts).
    ``threshold`` and ``stop_loss`` are fractions (0.0005 = 0.05 %); without a threshold the user's kept
    choice is used, and the one given is kept for next time. Starting again after a halt (daily loss
    limit) is the user's acknowledgement: the halt is lifted unless the kill switch is engaged."""
    market = (market or "").strip().upper()
    if not is_krw_market(market):
        raise errors.MarketNotFound(_("Only KRW markets like KRW-BTC can be traded."))
    if threshold is None:
        threshold = autotrade_threshold_get(user=user)
    threshold = _validate_threshold(_dec(threshold, what=_("The threshold")))
    order_krw = _dec(order_krw, what=_("The order size"))
    min_total = Decimal(settings.UPBIT_MIN_ORDER_KRW)
    if order_krw < min_total or order_krw.as_tuple().exponent < -8:  # type: ignore[operator]
        raise errors.UnderMinTotal(
            _("The order size must be at least %(min)s KRW.") % {"min": f"{settings.UPBIT_MIN_ORDER_KRW:,}"}
        )
    if max_position_krw is not None:
        max_position_krw = _dec(max_position_krw, what=_("The position limit"))
        if max_position_krw < order_krw:
            raise ValidationFailed(_("The position limit must be at least one order."), code="invalid_limit")
    if stop_loss is not None:
        stop_loss = _dec(stop_loss, what=_("The stop"))
        if not (ZERO < stop_loss < 1):
            raise ValidationFailed(_("The stop must be between 0% and 100% below cost."), code="invalid_stop")
    cooldown = DEFAULT_COOLDOWN_S if cooldown_s is None else int(cooldown_s)
    if cooldown < 0 or cooldown > 86_400:
        raise ValidationFailed(
            _("The cool-down must be between 0 and 86,400 seconds."), code="invalid_cooldown"
        )
    if kill_switch_engaged():
        raise errors.TradingHalted(_("Trading is stopped by the operators (kill switch)."))
    profile = trading_profile_ensure(user=user)
    if profile.max_order_krw is not None and order_krw > profile.max_order_krw:
        raise errors.RiskLimitExceeded(
            _("The order size is above your maximum order size of %(limit)s KRW.")
            % {"limit": f"{profile.max_order_krw:,.0f}"}
        )
    if model_active(market=market) is None:
        raise Conflict(_("No prediction model serves %(market)s yet.") % {"market": market}, code="no_model")
    if profile.mode == "live" and not exchange_credential_status(user=user).stored:
        raise errors.KeysMissing()
    if profile.auto_trading_halted:
        profile = auto_trading_resume(user=user)
    try:
        with transaction.atomic():
            session = AutoTradeSession.objects.create(
                user=user,
                market=market,
                mode=profile.mode,
                running_key=market,
                threshold=threshold,
                order_krw=order_krw,
                max_position_krw=max_position_krw,
                stop_loss=stop_loss.quantize(RATE_Q) if stop_loss is not None else None,
                cooldown_s=cooldown,
            )
    except IntegrityError:
        raise Conflict(
            _("Auto-trading is already running on %(market)s.") % {"market": market}, code="already_running"
        ) from None
    _threshold_keep(user=user, threshold=threshold)
    _push_session(session)
    return session


def _own_session(
    *, user: Any, session_id: int | None = None, market: str | None = None, lock: bool = False
) -> AutoTradeSession:
    qs = AutoTradeSession.objects.filter(user=user)
    if lock:
        qs = qs.select_for_update()
    if session_id is not None:
        session = qs.filter(pk=session_id).first()
    elif market:
        session = qs.filter(running_key=(market or "").strip().upper()).first()
    else:
        raise ValidationFailed(_("Say which session: its id or its market."), code="invalid")
    if session is None:
        raise NotFound(_("No such auto-trading session."))
    return session


def _threshold_keep(*, user: Any, threshold: Decimal) -> None:
    """Remember the user's chosen threshold in their auto-trading settings (the next start and the page use
    it); the row is written on the first choice."""
    kept, created = AutoTradeSettings.objects.get_or_create(
        user_id=user.pk, defaults={"threshold": threshold}
    )
    if not created and kept.threshold != threshold:
        AutoTradeSettings.objects.filter(pk=kept.pk).update(threshold=threshold, updated_at=timezone.now())


def autotrade_change(
    *, user: Any, threshold: Decimal, session_id: int | None = None, market: str | None = None
) -> AutoTradeSession | None:
    """Set the user's profit threshold: kept in their auto-trading settings even while nothing runs (the next
    start uses it), and applied to the running session of ``market`` (or ``session_id``) when there is one,
    whose next prediction is judged with it. A stopped session keeps the threshold it ran with.

    Returns the running session, or None when nothing runs; a ``session_id`` that is not the user's is
    NotFound.
    """
    threshold = _validate_threshold(_dec(threshold, what=_("The threshold")))
    session: AutoTradeSession | None
    with transaction.atomic():
        if session_id is not None:
            session = _own_session(user=user, session_id=session_id, lock=True)
        elif market:
            qs = AutoTradeSession.objects.select_for_update().filter(user=user)
            session = qs.filter(running_key=market.strip().upper()).first()
        else:
            raise ValidationFailed(_("Say which session: its id or its market."), code="invalid")
        _threshold_keep(user=user, threshold=threshold)
        if session is not None and not session.is_running:
            session = None
        if session is not None:
            session.threshold = threshold
            session.save(update_fields=["threshold", "updated_at"])
    if session is not None:
        _push_session(session)
    return session


def autotrade_stop(
    *, user: Any, session_id: int | None = None, market: str | None = None, reason: str = ""
) -> AutoTradeSession:
    """Stop a session and cancel its open orders (idempotent)."""
    with transaction.atomic():
        session = _own_session(user=user, session_id=session_id, market=market, lock=True)
        if session.is_running:
            session.state, session.running_key = AutoTradeState.STOPPED, None
            session.stopped_at = timezone.now()
            session.stop_reason = (reason or str(_("Stopped by the user")))[:200]
            session.save(update_fields=["state", "running_key", "stopped_at", "stop_reason", "updated_at"])
    _cancel_open_orders(session)
    _push_session(session)
    return session


def autotrade_sessions_stop_all(*, user: Any | None, reason: str) -> int:
    """Stop every running session (of one user, or everyone's: kill switch)."""
    qs = AutoTradeSession.objects.filter(state=AutoTradeState.RUNNING).select_related("user")
    if user is not None:
        qs = qs.filter(user=user)
    n = 0
    for session in qs:
        try:
            autotrade_stop(user=session.user, session_id=session.pk, reason=reason)
            n += 1
        except ApplicationError:
            logger.warning("could not stop auto-trading session %s", session.pk, exc_info=True)
    return n


def autotrade_on_halt(*, user: Any | None, reason: str) -> None:
    """The ``AUTO_TRADING_HALT_HOOKS`` entry: trading halted auto-trading for ``user`` (daily loss limit) or
    for everyone (``user=None``: the kill switch); stop the affected sessions and cancel their open orders."""
    autotrade_sessions_stop_all(user=user, reason=reason or "halted")


def _session_orders(session: AutoTradeSession) -> QuerySet[Order]:
    ids = AutoTradeDecision.objects.filter(session=session, order__isnull=False).values("order_id")
    return Order.objects.filter(pk__in=ids)


def _cancel_open_orders(session: AutoTradeSession) -> int:
    n = 0
    for order in _session_orders(session).filter(state__in=OPEN_ORDER_STATES):
        try:
            order_cancel(user=session.user, order_id=order.pk)
            n += 1
        except ApplicationError as exc:
            logger.warning("auto-trading stop: cancel of order %s failed: %s", order.pk, exc.code)
    return n


def _coin_held(session: AutoTradeSession, *, at_least: Decimal) -> Decimal | None:
    """The account's balance of the session's coin (available + locked) in the session's mode, or None when
    it cannot be read now. Live balances come from the ~5 s cache; a cached value below ``at_least`` is
    confirmed from the exchange before anything is cut on its word."""
    currency = session.market.split("-", 1)[1]

    def total(balances: list[Any]) -> Decimal:
        return sum((b.total for b in balances if b.currency == currency), ZERO)

    try:
        held = total(balances_get(user=session.user, mode=session.mode))
        if held < at_least and session.mode == "live":
            held = total(exchange_for(user=session.user, mode=session.mode).balances())
    except ApplicationError:
        return None
    return held


def _position_within_account(
    session: AutoTradeSession, position: SessionPosition
) -> tuple[SessionPosition, Decimal | None]:
    """The position cut to what the account holds, and the cut (None: none). Only judged while nothing of
    the session is in flight (no open order, no decision whose order is still being placed): a fill the
    balance already shows but the order rows not yet, or the reverse, must not read as a manual sale."""
    if position.volume <= 0 or position.open_orders:
        return position, None
    if AutoTradeDecision.objects.filter(session=session, outcome=AutoTradeOutcome.PENDING).exists():
        return position, None
    held = _coin_held(session, at_least=position.volume)
    if held is None or held >= position.volume:
        return position, None
    cut = position.cut_to(held)
    return cut, position.volume - cut.volume


def round_trip_cost(
    *,
    best_bid: Decimal,
    best_ask: Decimal,
    fee_rate: Decimal | None = None,
    spread_factor: Decimal | None = None,
) -> Costs:
    """Both fees plus ``spread_factor`` (default: ``AUTOTRADE_SPREAD_COST_FACTOR``, 0.5 = the half-spread)
    x the spread relative to the mid: what a buy-now, sell-later round trip costs before the price has to
    move at all."""
    rate = _fee_rate() if fee_rate is None else fee_rate
    factor = spread_cost_factor() if spread_factor is None else spread_factor
    if not rule.book_usable(best_bid=best_bid, best_ask=best_ask):
        raise errors.ExchangeUnavailable(_("The order book is not usable right now."))
    return rule.costs_of(best_bid=best_bid, best_ask=best_ask, fee_rate=rate, spread_factor=factor)


def _live_costs(market: str, prediction: dict[str, Any]) -> Costs:
    """Cost from the live book; the book the prediction was made on is the fallback."""
    try:
        book = marketdata.orderbook_for_fill(market=market)  # the live stream's; REST when stale
        if book.bids and book.asks:
            return round_trip_cost(best_bid=book.bids[0][0], best_ask=book.asks[0][0])
    except ApplicationError:
        pass
    bid, ask = prediction.get("best_bid"), prediction.get("best_ask")
    if bid is None or ask is None:
        raise errors.ExchangeUnavailable(_("No order book for %(market)s.") % {"market": market})
    return round_trip_cost(best_bid=Decimal(str(bid)), best_ask=Decimal(str(ask)))


def _prediction_fields(prediction: dict[str, Any]) -> tuple[str, int, Decimal]:
    try:
        market = str(prediction["market"])
        ts = int(prediction["ts"])
        pred = Decimal(str(float(prediction["predicted_return"]))).quantize(RATE_Q)
    except (KeyError, TypeError, ValueError, InvalidOperation):
        raise ValidationFailed(_("Malformed prediction."), code="invalid") from None
    if not pred.is_finite():
        raise ValidationFailed(_("Malformed prediction."), code="invalid")
    return market, ts, pred


def _horizon(prediction: dict[str, Any]) -> float | None:
    try:
        h = float(prediction.get("horizon_s") or 0)
    except (TypeError, ValueError):
        return None
    return h if h > 0 else None


def autotrade_on_prediction(*, prediction: dict[str, Any]) -> list[AutoTradeDecision]:
    """Evaluate every running session of the market; one user's failure never touches another's."""
    market, _ts, _pred = _prediction_fields(prediction)
    published = prediction.get("published_at")
    age = timezone.now().timestamp() - float(published) if published is not None else 0.0
    if age > MAX_PREDICTION_AGE_S:
        level = logging.INFO if age > BACKLOG_PREDICTION_AGE_S else logging.WARNING
        logger.log(level, "stale prediction for %s dropped (published %.0f s ago)", market, age)
        return []
    _maybe_prune_holds()
    out = []
    for sid in AutoTradeSession.objects.filter(market=market, state=AutoTradeState.RUNNING).values_list(
        "pk", flat=True
    ):
        try:
            decision = autotrade_session_evaluate(session_id=sid, prediction=prediction)
        except Exception:  # noqa: BLE001 - isolation: the other sessions still run
            logger.exception("auto-trading session %s failed on a prediction", sid)
            continue
        if decision is not None:
            out.append(decision)
    return out


_last_prune = 0.0


def _maybe_prune_holds() -> None:
    """At most every 10 minutes per process: "hold" decisions older than AUTOTRADE_HOLD_KEEP_DAYS (7) are
    deleted (one per prediction per session adds up); buys and sells are kept for good."""
    global _last_prune
    now = time.monotonic()
    if now - _last_prune < 600:
        return
    _last_prune = now
    autotrade_decisions_prune()


def autotrade_decisions_prune(*, keep_days: float | None = None) -> int:
    days = float(keep_days if keep_days is not None else settings.AUTOTRADE_HOLD_KEEP_DAYS)
    cutoff = timezone.now() - dt.timedelta(days=days)
    deleted, _by_model = AutoTradeDecision.objects.filter(
        action=AutoTradeAction.HOLD, created_at__lt=cutoff, manual_adjust_volume__isnull=True
    ).delete()  # a hold that cut the position for a manual sale is part of the position's history: kept
    return int(deleted)


def autotrade_session_evaluate(*, session_id: int, prediction: dict[str, Any]) -> AutoTradeDecision | None:
    """One session, one prediction: decide and log (phase 1, under the session's row lock), then place the
    order (phase 2, outside it). A redelivered prediction returns the logged decision (and finishes its
    order with the same idempotency key if a crash interrupted it)."""
    market, ts, pred = _prediction_fields(prediction)
    existing = AutoTradeDecision.objects.filter(session_id=session_id, prediction_ts=ts).first()
    if existing is not None:
        if existing.outcome == AutoTradeOutcome.PENDING:
            _place(existing)
        return existing
    costs = _live_costs(market, prediction)
    with transaction.atomic():
        session = AutoTradeSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None or not session.is_running or session.market != market:
            return None
        if ts <= session.last_prediction_ts:
            return None  # out of order: a newer prediction was already judged
        profile = TradingProfile.objects.filter(user_id=session.user_id).first()
        position, manual_cut = _position_within_account(session, session_position(session=session))
        now = timezone.now()
        action, reason, detail = rule.decide(
            session=session,
            profile=profile,
            predicted_return=pred,
            costs=costs,
            position=position,
            now=now,
            kill_switch=kill_switch_engaged(),
            min_order_krw=Decimal(settings.UPBIT_MIN_ORDER_KRW),
            horizon_s=_horizon(prediction),
        )
        if reason == "kill_switch":
            detail = str(_("Trading is stopped by the operators."))
        key = f"auto-{session.pk}-{ts}" if action != AutoTradeAction.HOLD else ""
        if manual_cut is not None:
            note = f"position reduced by a manual trade: -{manual_cut:f} -> {position.volume:f}"
            detail = f"{note} | {detail}" if detail else note
        decision = AutoTradeDecision.objects.create(
            session=session,
            user_id=session.user_id,
            market=market,
            prediction_ts=ts,
            predicted_return=pred,
            horizon_s=prediction.get("horizon_s"),
            model_version=str(prediction.get("model_version") or "")[:100],
            best_bid=costs.best_bid,
            best_ask=costs.best_ask,
            threshold=session.threshold,
            fee_cost=costs.fee_cost,
            half_spread=costs.half_spread,
            cost=costs.total,
            action=action,
            reason=reason,
            detail=detail[:300],
            idempotency_key=key,
            outcome=AutoTradeOutcome.PENDING if key else AutoTradeOutcome.NONE,
            order_krw=session.order_krw if action == AutoTradeAction.BUY else None,
            volume=position.volume.quantize(VOLUME_Q, rounding=ROUND_DOWN)
            if action == AutoTradeAction.SELL
            else None,
            manual_adjust_volume=manual_cut,
        )
        session.last_prediction_ts = ts
        fields = ["last_prediction_ts", "updated_at"]
        if key:
            session.last_order_at = now
            fields.append("last_order_at")
        session.save(update_fields=fields)
    if decision.outcome == AutoTradeOutcome.PENDING:
        _place(decision)
    else:
        _push_decision(decision)
    return decision


def _cap_sell_volume(decision: AutoTradeDecision) -> None:
    """Never try to sell more than the account holds (the user may have sold some of it by hand)."""
    session = decision.session
    try:
        available = exchange_for(user=session.user, mode=session.mode).order_chance(market=decision.market)
    except ApplicationError:
        return  # order_place reports the real problem
    held = available.ask_balance.balance.quantize(VOLUME_Q, rounding=ROUND_DOWN)
    if decision.volume is not None and held < decision.volume:
        decision.detail = f"{decision.detail} | only {held} held"[:300]
        decision.volume = held
        AutoTradeDecision.objects.filter(pk=decision.pk).update(volume=held, detail=decision.detail)


def _place(decision: AutoTradeDecision) -> None:
    session = decision.session
    try:
        if decision.action == AutoTradeAction.BUY:
            order = order_place(
                user=session.user,
                market=decision.market,
                side=Side.BID,
                ord_type=OrdType.PRICE,
                price=decision.order_krw,
                idempotency_key=decision.idempotency_key,
                source=OrderSource.AUTO,
                mode=session.mode,
            )
        else:
            _cap_sell_volume(decision)
            order = order_place(
                user=session.user,
                market=decision.market,
                side=Side.ASK,
                ord_type=OrdType.MARKET,
                volume=decision.volume,
                idempotency_key=decision.idempotency_key,
                source=OrderSource.AUTO,
                mode=session.mode,
            )
    except errors.ExchangeUnavailable as exc:
        # Outcome unknown: the order row (if any) is pending and reconciliation settles it.
        order = Order.objects.filter(
            user_id=session.user_id, idempotency_key=decision.idempotency_key
        ).first()
        AutoTradeDecision.objects.filter(pk=decision.pk).update(
            order=order,
            outcome=AutoTradeOutcome.PLACED if order else AutoTradeOutcome.REJECTED,
            detail=f"{decision.detail} | {exc.code}"[:300],
        )
    except ApplicationError as exc:
        order = Order.objects.filter(
            user_id=session.user_id, idempotency_key=decision.idempotency_key
        ).first()
        AutoTradeDecision.objects.filter(pk=decision.pk).update(
            order=order, outcome=AutoTradeOutcome.REJECTED, detail=f"{exc.code}: {exc.message}"[:300]
        )
    else:
        AutoTradeDecision.objects.filter(pk=decision.pk).update(order=order, outcome=AutoTradeOutcome.PLACED)
    decision.refresh_from_db()
    _push_decision(decision)


# ----------------------------------------------------------------------------- reads and pushes


def _push_session(session: AutoTradeSession) -> None:
    user_event_publish(
        user_id=session.user_id,
        event=AutoSessionEvent(session=session_event_data(session=session, with_position=False)),
    )


def _push_decision(decision: AutoTradeDecision) -> None:
    user_event_publish(
        user_id=decision.user_id, event=AutoDecisionEvent(decision=decision_event_data(decision=decision))
    )
