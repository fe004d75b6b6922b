"""Placing, cancelling, syncing and reconciling orders, for both modes through the exchange interface.

Order of events in ``order_place``: checks (kill switch, halt, parameters, tick, minimum, market, risk,
balance) -> the ``Order`` row is committed as ``pending`` with the idempotency key -> the exchange is
called with that key as Upbit ``identifier`` -> the row is updated from the answer. A crash between the
commit and the answer leaves a ``pending`` row that ``orders_reconcile`` settles by looking the identifier
up on the exchange, so an order is never placed twice.

When the exchange gives no answer (503) the outcome is unknown, unless the exchange certainly never took
the order: the paper exchange runs in our database, so a failure there placed nothing, and a live request
cannot still be in flight after ``PENDING_GRACE``. A retry with the same key asks the exchange first
(``_unconfirmed_settle``): known there -> the order as it stands; certainly never placed -> the key is free
again and this request places it (the identifier, unique forever on Upbit, also keeps a late first attempt
from ever placing a second one); otherwise 503 ``order_unconfirmed``. A retry never answers "pending" for an
order nobody took.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
import uuid as uuid_mod
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import metrics
from core.errors import ApplicationError, NotFound
from market.upbit.errors import upbit_error
from market.upbit.protocol import VOLUME_QUANTUM, is_krw_market
from market.upbit.rules import order_rule_error, order_total_error
from trading import errors, marketdata
from trading.cache_keys import LIVE_BALANCES_TTL, live_balances_cache_key
from trading.exchanges import exchange_for
from trading.exchanges.base import Balance, Exchange, ExchangeOrder
from trading.exchanges.matching import AVG_PRICE_QUANTUM, fee_for
from trading.exchanges.paper import PaperExchange
from trading.messages import BalanceItem, BalancesEvent, OrderEvent
from trading.models import (
    OPEN_ORDER_STATES,
    Fill,
    Order,
    OrderSource,
    OrderState,
    OrdType,
    PaperBalance,
    Position,
    ScheduledOrder,
    ScheduledState,
    Side,
    TradingMode,
    TradingProfile,
)
from trading.selectors import order_event_data
from trading.services.profiles import kill_switch_engaged_for, trading_profile_ensure
from trading.services.realtime import user_events_publish
from trading.services.risk import daily_loss_check

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,64}$")
RESERVED_KEY_PREFIXES = ("sched-", "auto-")
PENDING_GRACE = dt.timedelta(seconds=120)  # longer than the client's worst case (timeouts x retries)
STATE_FROM_EXCHANGE = {
    "wait": OrderState.OPEN,
    "watch": OrderState.OPEN,
    "done": OrderState.DONE,
    "cancel": OrderState.CANCELLED,
}


@dataclass(frozen=True)
class OrderRequest:
    market: str
    side: str
    ord_type: str
    price: Decimal | None
    volume: Decimal | None

    def fingerprint(self, source: str) -> str:
        parts = [self.market, self.side, self.ord_type, _canon(self.price), _canon(self.volume), source]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _canon(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def idempotency_key_clean(key: str | None, *, internal: bool = False) -> str:
    """A client key (``Idempotency-Key`` header / ``client_order_id``), or a fresh one when none was sent."""
    if key is None or key == "":
        return uuid_mod.uuid4().hex
    if not KEY_RE.match(key):
        raise errors.InvalidOrder(
            _("The idempotency key must be 1-64 letters, digits or the characters _ - : ."),
            code="invalid_key",
        )
    if not internal and key.startswith(RESERVED_KEY_PREFIXES):
        raise errors.InvalidOrder(_("This idempotency key prefix is reserved."), code="invalid_key")
    return key


def _positive(value: Any, *, what: str) -> Decimal:
    if isinstance(value, float) or not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise errors.InvalidOrder(_("%(field)s must be a positive decimal number.") % {"field": what})
    return value


def order_request_validate(
    *, market: str, side: str, ord_type: str, price: Decimal | None, volume: Decimal | None
) -> OrderRequest:
    """Shape, number and exchange-rule checks that need no balance: type/parameter matrix, positive Decimals,
    8-decimal volumes, KRW tick size, 5,000 KRW minimum where the total is known, KRW market format."""
    market = (market or "").strip().upper()
    if not is_krw_market(market):
        raise errors.MarketNotFound(_("Only KRW markets like KRW-BTC can be traded."))
    if side not in Side.values or ord_type not in OrdType.values:
        raise errors.InvalidOrder(_("Unknown order side or type."))
    if ord_type == OrdType.PRICE:
        if side != Side.BID or volume is not None or price is None:
            raise errors.InvalidOrder(_("A market buy takes a KRW amount only."))
    elif ord_type == OrdType.MARKET:
        if side != Side.ASK or price is not None or volume is None:
            raise errors.InvalidOrder(_("A market sell takes a volume only."))
    elif price is None or volume is None:
        raise errors.InvalidOrder(_("A limit order needs a price and a volume."))
    if price is not None:
        price = _positive(price, what=_("The price") if ord_type == OrdType.LIMIT else _("The amount"))
        if price.as_tuple().exponent < -8:  # type: ignore[operator]
            raise errors.InvalidOrder(_("Amounts carry at most 8 decimal places."))
    if volume is not None:
        volume = _positive(volume, what=_("The volume"))
    _raise_broken(
        order_rule_error(side=side, ord_type=ord_type, price=price, volume=volume, min_total=_min_total())
    )
    return OrderRequest(market=market, side=side, ord_type=ord_type, price=price, volume=volume)


def _min_total() -> Decimal:
    return Decimal(settings.UPBIT_MIN_ORDER_KRW)


def _raise_broken(broken: str | None) -> None:
    """An Upbit rule name from ``market.upbit.rules`` as the application's error."""
    if broken is None:
        return
    if broken.startswith("under_min_total"):
        raise errors.UnderMinTotal(
            _("The order total must be at least %(min)s KRW.") % {"min": f"{_min_total():,}"}
        )
    raise errors.from_upbit(upbit_error(broken))


def _market_exists(market: str) -> None:
    if market not in marketdata.market_codes():
        raise errors.MarketNotFound()


def _reference_price(market: str) -> Decimal:
    ticker = marketdata.tickers_get(markets=[market]).get(market)
    if ticker is None or ticker.price <= 0:
        raise errors.ExchangeUnavailable(_("No current price for this market; try again shortly."))
    return ticker.price


def live_balances_check_key(user_id: int) -> str:
    return f"trading:live-balances-check:{user_id}"


def _risk_and_balance_check(
    *, user: Any, exchange: Exchange, req: OrderRequest, profile: Any, mode: str, funds: bool = True
) -> LiveSnapshot | None:
    """Checks that need the account: available balance (fees included) and the user's risk limits.

    Paper: the ledger's numbers (``order_chance``, local). Live: the user's balances as read from Upbit at
    most ``LIVE_BALANCES_TTL`` seconds ago (no remote call per order); a refusal is only ever made on
    numbers read from the exchange just now, and Upbit's own ``insufficient_funds`` stays authoritative for
    anything the snapshot missed. A user with a position limit is always checked on current numbers.
    ``funds=False`` (paper): the order size limit only; the paper exchange checks the funds itself on the
    rows it locks for the order. Returns the live snapshot the order was checked against (None for paper)."""
    if req.ord_type == OrdType.PRICE:
        total = req.price
    elif req.ord_type == OrdType.LIMIT:
        total = req.price * req.volume  # type: ignore[operator]
    else:
        total = req.volume * _reference_price(req.market)  # type: ignore[operator]
        _raise_broken(order_total_error(side=req.side, total=total, min_total=_min_total()))
    assert total is not None
    if profile.max_order_krw is not None and total > profile.max_order_krw:
        raise errors.RiskLimitExceeded(
            _("This order (%(total)s KRW) is above your maximum order size of %(limit)s KRW.")
            % {"total": f"{total:,.0f}", "limit": f"{profile.max_order_krw:,.0f}"}
        )
    if mode != TradingMode.LIVE:
        if not funds:
            return None
        chance = exchange.order_chance(market=req.market)
        _funds_check(req=req, profile=profile, quote=chance.bid_balance, base=chance.ask_balance, total=total)
        return None
    snapshot = None if profile.max_position_krw is not None else _live_snapshot_get(user.pk)
    if snapshot is not None:
        try:
            _funds_check(req=req, profile=profile, **_pair(snapshot.balances, req.market), total=total)
            return snapshot
        except errors.InsufficientFunds:
            pass  # the snapshot may predate a deposit or a fill: decide on the exchange's numbers
    snapshot = _live_snapshot_fetch(user_id=user.pk, exchange=exchange)
    _funds_check(req=req, profile=profile, **_pair(snapshot.balances, req.market), total=total)
    return snapshot


@dataclass(frozen=True)
class LiveSnapshot:
    """Live balances as read from Upbit, and until when they may stand in for a fresh read."""

    balances: list[Balance]
    expires_at: float


def _live_snapshot_get(user_id: int) -> LiveSnapshot | None:
    snapshot = cache.get(live_balances_check_key(user_id))
    if isinstance(snapshot, LiveSnapshot) and snapshot.expires_at > time.time():
        return snapshot
    return None


def _live_snapshot_fetch(*, user_id: int, exchange: Exchange) -> LiveSnapshot:
    balances = exchange.balances()
    snapshot = LiveSnapshot(balances=balances, expires_at=time.time() + LIVE_BALANCES_TTL)
    cache.set_many(
        {live_balances_check_key(user_id): snapshot, live_balances_cache_key(user_id): balances},
        LIVE_BALANCES_TTL,
    )
    return snapshot


def _live_snapshot_after_resting_order(*, order: Order, snapshot: LiveSnapshot, rate: Decimal) -> None:
    """A limit order that rests unfilled only locked funds: keep the snapshot, with those funds locked, for
    the rest of its life (any other change - a fill, a cancel - dropped it in ``_publish``)."""
    remaining = snapshot.expires_at - time.time()
    if remaining <= 0.05:
        return
    if order.side == Side.BID:
        currency = order.market.split("-", 1)[0]
        amount = order.price * order.volume  # type: ignore[operator]
        amount += fee_for(amount, rate)
    else:
        currency = order.market.split("-", 1)[1]
        amount = order.volume  # type: ignore[assignment]
    balances = [
        replace(b, balance=b.balance - amount, locked=b.locked + amount) if b.currency == currency else b
        for b in snapshot.balances
    ]
    cache.set(
        live_balances_check_key(order.user_id),
        LiveSnapshot(balances=balances, expires_at=snapshot.expires_at),
        remaining,
    )


def _pair(balances: list[Balance], market: str) -> dict[str, Balance]:
    quote_ccy, base_ccy = market.split("-", 1)
    by_ccy = {b.currency: b for b in balances}
    empty = Balance(currency="", balance=ZERO, locked=ZERO, avg_buy_price=ZERO)
    return {
        "quote": by_ccy.get(quote_ccy) or replace(empty, currency=quote_ccy),
        "base": by_ccy.get(base_ccy) or replace(empty, currency=base_ccy),
    }


def _funds_check(*, req: OrderRequest, profile: Any, quote: Balance, base: Balance, total: Decimal) -> None:
    rate = settings.UPBIT_FEE_RATE
    if req.side == Side.BID:
        if quote.balance < total + fee_for(total, rate):
            raise errors.InsufficientFunds(
                _(
                    "Not enough KRW: this order needs %(need)s KRW including the fee; "
                    "%(have)s KRW is available."
                )
                % {
                    "need": f"{total + fee_for(total, rate):,.0f}",
                    "have": f"{quote.balance:,.0f}",
                }
            )
        if profile.max_position_krw is not None:
            held = base.total * _reference_price(req.market)
            if held + total > profile.max_position_krw:
                raise errors.RiskLimitExceeded(
                    _("This buy would take your %(coin)s position above your limit of %(limit)s KRW.")
                    % {"coin": req.market.split("-")[1], "limit": f"{profile.max_position_krw:,.0f}"}
                )
    elif base.balance < req.volume:  # type: ignore[operator]
        raise errors.InsufficientFunds(
            _("Not enough %(coin)s: %(have)s is available.")
            % {"coin": req.market.split("-")[1], "have": format(base.balance.normalize(), "f")}
        )


# ----------------------------------------------------------------------------------------------------------
# Place
# ----------------------------------------------------------------------------------------------------------


@metrics.order_place_observed  # placed / rejected by code, ack latency (core/metrics.py)
def order_place(
    *,
    user: Any,
    market: str,
    side: str,
    ord_type: str,
    price: Decimal | None = None,
    volume: Decimal | None = None,
    idempotency_key: str | None = None,
    source: str = OrderSource.MANUAL,
    mode: str | None = None,
    exchange: Exchange | None = None,
    profile: TradingProfile | None = None,
) -> Order:
    """Validate and place an order; returns the ``Order`` (a retry with the same key returns the same one).

    ``mode`` defaults to the user's current mode (scheduled orders pass the mode they were created in);
    ``exchange`` may be injected (tests, auto-trading); ``profile`` is the user's ``TradingProfile`` when the
    caller already read it in this request (read here otherwise). Paper orders take
    ``_paper_order_place`` (one transaction), others ``_order_place_on_exchange`` (two commits)."""
    internal = source != OrderSource.MANUAL
    key = idempotency_key_clean(idempotency_key, internal=internal)
    req = order_request_validate(market=market, side=side, ord_type=ord_type, price=price, volume=volume)
    fingerprint = req.fingerprint(source)
    if profile is None or profile.user_id != user.pk:
        profile = trading_profile_ensure(user=user)
    if (mode or profile.mode) == TradingMode.PAPER and (
        exchange is None or isinstance(exchange, PaperExchange)
    ):
        return _paper_order_place(
            user=user,
            req=req,
            key=key,
            fingerprint=fingerprint,
            source=source,
            exchange=exchange if isinstance(exchange, PaperExchange) else PaperExchange(user),
            profile=profile,
        )
    return _order_place_on_exchange(
        user=user,
        req=req,
        key=key,
        fingerprint=fingerprint,
        source=source,
        mode=mode,
        exchange=exchange,
        profile=profile,
    )


def _order_place_on_exchange(
    *,
    user: Any,
    req: OrderRequest,
    key: str,
    fingerprint: str,
    source: str,
    mode: str | None,
    exchange: Exchange | None,
    profile: TradingProfile,
) -> Order:
    """The two-commit path for an exchange outside our database (live): the ``pending`` row is committed
    before the request leaves, and updated from the answer (or settled later by reconciliation)."""
    existing = Order.objects.filter(user=user, idempotency_key=key).first()
    if existing is not None:
        if not _unconfirmed(existing):
            return _replay(existing, fingerprint)
        _replay(existing, fingerprint)  # a different request under this key: 409, nothing asked
        settled = _unconfirmed_settle(order=existing, exchange=_exchange_in(existing.mode, exchange, user))
        if settled is not None:
            return settled
        mode = mode or existing.mode  # never placed: placed now, in the mode of the first attempt

    _trading_allowed(source=source, profile=profile)
    mode = mode or profile.mode
    _market_exists(req.market)
    exchange = exchange or exchange_for(user=user, mode=mode)
    snapshot = _risk_and_balance_check(user=user, exchange=exchange, req=req, profile=profile, mode=mode)

    try:
        with transaction.atomic():
            order = Order.objects.create(
                **_order_row(user=user, mode=mode, req=req, source=source, key=key, fingerprint=fingerprint),
                state=OrderState.PENDING,
            )
    except IntegrityError:
        # A concurrent request with the same key won the insert: it is the one that talks to the exchange.
        existing = Order.objects.filter(user=user, idempotency_key=key).first()
        if existing is None:
            raise
        return _replay(existing, fingerprint)

    try:
        answer = exchange.place_order(
            market=req.market,
            side=req.side,
            ord_type=req.ord_type,
            volume=req.volume,
            price=req.price,
            identifier=key,
        )
    except (errors.ExchangeRateLimited, errors.ExchangeAuthFailed, errors.MarketOffline):
        # Refused at the door (rate limit, keys, a market under maintenance): nothing was placed, so the row
        # goes and a retry with the same key can succeed later (were the identifier burnt, the retry gets a
        # plain rejection, never a second order).
        Order.objects.filter(pk=order.pk, state=OrderState.PENDING).delete()
        raise
    except errors.ExchangeUnavailable as exc:
        if _forget_if_never_placed(order=order, exchange=exchange):
            raise errors.ExchangeUnavailable(
                _(
                    "The order was not placed: the exchange could not be reached. Nothing is reserved; try "
                    "again shortly (the same idempotency key may be used)."
                )
            ) from exc
        # The outcome is unknown (the request may have reached Upbit): keep ``pending`` for reconciliation.
        Order.objects.filter(pk=order.pk).update(
            error_code=exc.code, error_message=str(exc.message)[:300], submitted_at=timezone.now()
        )
        _publish(order)
        raise errors.ExchangeUnavailable(
            _(
                "The exchange did not confirm the order in time. It is being checked and will show up "
                "in your order list either way; do not send it again."
            ),
            extra={"order_id": order.pk},
        ) from exc
    except ApplicationError as exc:
        _reject(order, exc)
        raise
    order.submitted_at = timezone.now()  # written with the answer: one commit less on the hot path
    if answer.trades is None and answer.ord_type in (OrdType.PRICE, OrdType.MARKET):
        # Market orders settle at once; fetch them with their trades so fills show immediately.
        try:
            answer = exchange.get_order(uuid=answer.uuid)
        except ApplicationError:
            pass  # reconciliation picks the fills up
    order = order_apply_exchange_state(order=order, answer=answer)
    if (
        snapshot is not None
        and order.mode == TradingMode.LIVE
        and order.ord_type == OrdType.LIMIT
        and order.state == OrderState.OPEN
        and not order.executed_volume
    ):
        rate = settings.UPBIT_FEE_RATE
        _live_snapshot_after_resting_order(order=order, snapshot=snapshot, rate=rate)
    return order


def _trading_allowed(*, source: str, profile: TradingProfile) -> None:
    """The operators' kill switch and, for auto-trading, the user's halt."""
    if kill_switch_engaged_for(profile=profile):
        raise errors.TradingHalted(
            _("Trading is stopped by the operators (kill switch). No orders are accepted.")
        )
    if source == OrderSource.AUTO and profile.auto_trading_halted:
        raise errors.TradingHalted(
            _("Auto-trading is halted for your account: %(reason)s")
            % {"reason": profile.halted_reason or _("risk limit")}
        )


class _RefusedByExchange(Exception):
    """Carries an error the paper exchange raised while placing (the order is recorded as rejected)."""

    def __init__(self, error: ApplicationError) -> None:
        super().__init__(error.code)
        self.error = error


def _paper_order_place(
    *,
    user: Any,
    req: OrderRequest,
    key: str,
    fingerprint: str,
    source: str,
    exchange: PaperExchange,
    profile: TradingProfile,
) -> Order:
    """A paper order in one transaction: the paper exchange's order, fills and balances, our ``Order``, its
    ``Fill`` rows and the position commit together or not at all (the paper exchange lives in our database,
    so there is no outcome to settle later and no ``pending`` row). The book is read before the transaction.

    The idempotency key is enforced by the unique constraint, not by a look-up per order: a key already used
    makes the transaction fail (nothing of it is kept), and only then is the existing order looked up and
    replayed. Any refusal is also checked against an existing order first, so a retry of a placed order gets
    that order even when, say, the funds it spent are gone now. Funds are checked on the rows locked for the
    order (``select_for_update``), so concurrent orders of one user cannot overdraw."""
    try:
        _trading_allowed(source=source, profile=profile)
        _market_exists(req.market)
        if profile.max_position_krw is not None or req.ord_type == OrdType.MARKET:
            # Checks on numbers outside the locked rows (position value, a market sell's estimated total).
            _risk_and_balance_check(user=user, exchange=exchange, req=req, profile=profile, mode="paper")
        elif profile.max_order_krw is not None and req.price is not None:
            _risk_and_balance_check(
                user=user, exchange=exchange, req=req, profile=profile, mode="paper", funds=False
            )
        try:
            book = exchange.book(req.market)
        except errors.ExchangeUnavailable as exc:
            raise errors.ExchangeUnavailable(
                _(
                    "The order was not placed: the exchange could not be reached. Nothing is reserved; try "
                    "again shortly (the same idempotency key may be used)."
                )
            ) from exc
        with transaction.atomic():
            try:
                answer, balances = exchange.place_order_on(
                    book=book,
                    market=req.market,
                    side=req.side,
                    ord_type=req.ord_type,
                    volume=req.volume,
                    price=req.price,
                    identifier=key,
                    savepoint=False,
                )
            except errors.InsufficientFunds:
                raise  # as the check before sending would have said: no order
            except ApplicationError as exc:
                raise _RefusedByExchange(exc) from exc
            order, fills = _paper_order_record(
                user=user, req=req, key=key, fingerprint=fingerprint, source=source, answer=answer
            )
            if fills and profile.daily_loss_limit_krw is not None:
                transaction.on_commit(lambda: _daily_loss_check(user))
            _publish(order, paper_balances=balances)
        return order
    except (ApplicationError, IntegrityError, _RefusedByExchange) as exc:
        existing = Order.objects.filter(user=user, idempotency_key=key).first()
        if existing is not None:
            if _unconfirmed(existing):  # a row an earlier version left pending: settle it there
                return _order_place_on_exchange(
                    user=user,
                    req=req,
                    key=key,
                    fingerprint=fingerprint,
                    source=source,
                    mode=existing.mode,
                    exchange=exchange,
                    profile=profile,
                )
            return _replay(existing, fingerprint)
        if isinstance(exc, _RefusedByExchange):
            _paper_order_rejected(
                user=user, req=req, key=key, fingerprint=fingerprint, source=source, error=exc.error
            )
            raise exc.error from None
        raise


def _paper_order_record(
    *, user: Any, req: OrderRequest, key: str, fingerprint: str, source: str, answer: ExchangeOrder
) -> tuple[Order, list[Fill]]:
    """Our ``Order`` (in its final state), its fills and the position, from the paper exchange's answer."""
    now = timezone.now()
    order = Order(
        **_order_row(
            user=user, mode=TradingMode.PAPER, req=req, source=source, key=key, fingerprint=fingerprint
        ),
        exchange_uuid=answer.uuid,
        book_source=answer.book_source,
        book_age_ms=answer.book_age_ms,
        executed_volume=answer.executed_volume,
        executed_funds=answer.executed_funds if answer.executed_funds is not None else ZERO,
        paid_fee=answer.paid_fee,
        submitted_at=now,
        last_synced_at=now,
    )
    order.state = _state_from_answer(order, answer)
    if order.state in (OrderState.DONE, OrderState.CANCELLED):
        order.closed_at = now
    order.save(force_insert=True)  # a key used before fails here (the unique constraint)
    rate = settings.UPBIT_FEE_RATE
    fills = [_fill_row(order, t, rate) for t in answer.trades or []]
    if fills:
        _position_apply(order=order, fills=fills)
        Fill.objects.bulk_create(fills)
    _fills_known(order, fills)
    return order, fills


def _fills_known(order: Order, fills: list[Fill]) -> None:
    """Hand ``order.fills.all()`` the rows just written, as ``prefetch_related`` would: no re-read."""
    qs = order.fills.all()
    qs._result_cache = fills  # type: ignore[attr-defined]
    qs._prefetch_done = True  # type: ignore[attr-defined]
    cache_name = Fill._meta.get_field("order").remote_field.cache_name  # type: ignore[union-attr]
    order._prefetched_objects_cache = {cache_name: qs}  # type: ignore[attr-defined]


def _paper_order_rejected(
    *, user: Any, req: OrderRequest, key: str, fingerprint: str, source: str, error: ApplicationError
) -> None:
    """Record an order the paper exchange refused (as ``_reject`` does on the two-commit path), so a retry
    with the same key gets the same refusal."""
    now = timezone.now()
    try:
        order = Order.objects.create(
            **_order_row(
                user=user, mode=TradingMode.PAPER, req=req, source=source, key=key, fingerprint=fingerprint
            ),
            state=OrderState.REJECTED,
            error_code=error.code,
            error_message=str(error.message)[:300],
            submitted_at=now,
            closed_at=now,
        )
    except IntegrityError:
        return  # a concurrent request with this key recorded its own outcome
    _publish(order)


def _fill_row(order: Order, trade: Any, rate: Decimal) -> Fill:
    """A ``Fill`` from one of the exchange's trades (the fee computed at ``rate`` when it gave none)."""
    return Fill(
        order=order,
        trade_uuid=trade.uuid,
        price=trade.price,
        volume=trade.volume,
        funds=trade.funds,
        fee=trade.fee if trade.fee is not None else fee_for(trade.funds, rate),
        executed_at=trade.created_at,
    )


def _order_row(
    *, user: Any, mode: Any, req: OrderRequest, source: str, key: str, fingerprint: str
) -> dict[str, Any]:
    """The fields of an ``Order`` row that come from the request (every path writes them the same way)."""
    return {
        "user": user,
        "mode": mode,
        "market": req.market,
        "side": req.side,
        "ord_type": req.ord_type,
        "price": req.price,
        "volume": req.volume,
        "source": source,
        "idempotency_key": key,
        "request_fingerprint": fingerprint,
    }


def _daily_loss_check(user: Any) -> None:
    try:
        daily_loss_check(user=user)
    except Exception:  # noqa: BLE001 - the order is done; the periodic check runs again
        logger.warning("daily loss check for user %s failed", user.pk, exc_info=True)


def _state_from_answer(order: Order, answer: ExchangeOrder) -> str:
    state = str(STATE_FROM_EXCHANGE.get(answer.state, OrderState.OPEN))  # a TextChoices' str is its value
    if state == OrderState.CANCELLED and order.ord_type == OrdType.PRICE and order.executed_volume > 0:
        # Upbit closes a market buy as ``cancel`` when only sub-satoshi dust of the KRW was left: filled.
        return str(OrderState.DONE)
    return state


def _unconfirmed(order: Order) -> bool:
    """Whether ``order``'s first attempt got no answer from the exchange (its row kept ``pending``)."""
    return order.state == OrderState.PENDING and order.error_code == errors.ExchangeUnavailable.code


def _exchange_in(mode: str, exchange: Exchange | None, user: Any) -> Exchange:
    if exchange is not None and exchange.mode == mode:
        return exchange
    return exchange_for(user=user, mode=mode)


def _never_placed(order: Order) -> bool:
    """Whether an order the exchange does not know can no longer turn up there: the paper exchange stores an
    order in the call that places it; a live request is over after ``PENDING_GRACE`` (the client's timeouts
    and retries)."""
    return order.mode == TradingMode.PAPER or timezone.now() - order.created_at > PENDING_GRACE


def _free_key(order: Order) -> bool:
    """Delete a ``pending`` row nothing was placed for: its key may place the order again."""
    return Order.objects.filter(pk=order.pk, state=OrderState.PENDING).delete()[0] > 0


def _forget_if_never_placed(*, order: Order, exchange: Exchange) -> bool:
    """Delete ``order``'s ``pending`` row when the exchange does not know it and never will; False when it
    may still be there or on its way."""
    if not _never_placed(order):
        return False
    try:
        exchange.get_order(identifier=order.idempotency_key)
    except errors.ExchangeOrderNotFound:
        return _free_key(order)
    except ApplicationError:
        return False
    return False


def _unconfirmed_settle(*, order: Order, exchange: Exchange) -> Order | None:
    """A retry of an order whose first attempt got no answer: the order as the exchange knows it, or None when
    it certainly never took it (the row is gone and the caller places the order). Raises ``OrderUnconfirmed``
    (503, with the order's id) while that cannot be told yet."""
    try:
        answer = exchange.get_order(identifier=order.idempotency_key)
    except errors.ExchangeOrderNotFound:
        if _never_placed(order) and _free_key(order):
            return None
    except (errors.ExchangeUnavailable, errors.ExchangeRateLimited):
        pass
    else:
        return order_apply_exchange_state(order=order, answer=answer)
    try:
        order.refresh_from_db()
    except Order.DoesNotExist:
        return None  # a concurrent retry found it never placed and freed the key
    if not _unconfirmed(order):  # settled meanwhile (reconciliation, a concurrent retry)
        return _replay(order, order.request_fingerprint)
    raise errors.OrderUnconfirmed(extra={"order_id": order.pk})


def _replay(existing: Order, fingerprint: str) -> Order:
    if existing.request_fingerprint and existing.request_fingerprint != fingerprint:
        raise errors.IdempotencyConflict()
    if existing.state == OrderState.REJECTED and existing.error_code:
        cls = errors.ERROR_CLASSES.get(existing.error_code, errors.ExchangeRejected)
        raise cls(existing.error_message or _("The order was rejected."))
    return existing


def _reject(order: Order, exc: ApplicationError) -> None:
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(
        state=OrderState.REJECTED,
        error_code=exc.code,
        error_message=str(exc.message)[:300],
        closed_at=now,
        submitted_at=now,
    )
    order.refresh_from_db()
    # A scheduled order whose order turned out rejected (e.g. settled by reconciliation) failed.
    ScheduledOrder.objects.filter(order=order, state=ScheduledState.FIRED).update(
        state=ScheduledState.FAILED, failure_reason=order.error_message, updated_at=now
    )
    _publish(order)


def _publish(order: Order, *, paper_balances: list[Any] | None = None) -> None:
    """Push the order and the balances to the user's sockets after commit; ``paper_balances``: the paper
    account's rows as the order left them (read here otherwise)."""
    if order.mode == TradingMode.LIVE:
        cache.delete_many([live_balances_cache_key(order.user_id), live_balances_check_key(order.user_id)])
    # Balances moved (funds locked, filled or released). Paper balances are in our database and go out
    # with the event; live ones are only announced (the page re-reads them over REST, from the 5 s cache).
    balances = BalancesEvent(mode=order.mode)
    if order.mode == TradingMode.PAPER:
        balances.balances = [
            BalanceItem(
                currency=b.currency,
                balance=format(b.balance, "f"),
                locked=format(b.locked, "f"),
                avg_buy_price=format(b.avg_buy_price, "f"),
            )
            for b in (
                paper_balances
                if paper_balances is not None
                else PaperBalance.objects.filter(user_id=order.user_id).order_by("currency")
            )
        ]
    user_events_publish(
        user_id=order.user_id, events=[OrderEvent(order=order_event_data(order=order)), balances]
    )


# ----------------------------------------------------------------------------------------------------------
# Sync from the exchange
# ----------------------------------------------------------------------------------------------------------


def order_apply_exchange_state(*, order: Order, answer: ExchangeOrder) -> Order:
    """Bring an ``Order`` in line with the exchange's view: state, amounts, new fills (with fees and realized
    P&L), position. Idempotent (fills are keyed by the exchange's trade uuid)."""
    rate = settings.UPBIT_FEE_RATE
    new_fills = 0
    with transaction.atomic():
        submitted_at = order.submitted_at
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.submitted_at is None:
            order.submitted_at = submitted_at
        previous_state = order.state
        if answer.uuid:
            order.exchange_uuid = answer.uuid
        if answer.book_source and not order.book_source:
            order.book_source, order.book_age_ms = answer.book_source, answer.book_age_ms
        if answer.trades is not None:
            known = set(order.fills.values_list("trade_uuid", flat=True))
            fills = [_fill_row(order, t, rate) for t in answer.trades if t.uuid not in known]
            if fills:
                _position_apply(order=order, fills=fills)
                Fill.objects.bulk_create(fills)
                new_fills = len(fills)
            funds = sum((f.funds for f in order.fills.all()), ZERO)
            order.executed_funds = answer.executed_funds if answer.executed_funds is not None else funds
        elif answer.executed_funds is not None:
            order.executed_funds = answer.executed_funds
        order.executed_volume = answer.executed_volume
        order.paid_fee = answer.paid_fee
        order.state = _state_from_answer(order, answer)
        if order.state in (OrderState.DONE, OrderState.CANCELLED) and order.closed_at is None:
            order.closed_at = timezone.now()
        order.last_synced_at = timezone.now()
        order.error_code = ""
        order.error_message = ""
        order.save()
        if order.state == OrderState.DONE:
            ScheduledOrder.objects.filter(order=order, state=ScheduledState.FIRED).update(
                state=ScheduledState.FILLED, updated_at=timezone.now()
            )
        if new_fills or order.state != previous_state:
            _publish(order)
    if new_fills:
        user = order.user
        transaction.on_commit(lambda: _daily_loss_check(user))
    return order


def _position_apply(*, order: Order, fills: list[Fill]) -> None:
    """Average-cost position per currency, fill by fill (one locked read, one write); buy fees go into the
    cost, sell fees reduce the proceeds. Sets each fill's ``realized_pnl``."""
    currency = order.market.split("-", 1)[1]
    pos, _created = Position.objects.select_for_update().get_or_create(
        user_id=order.user_id, mode=order.mode, currency=currency
    )
    outside_basis: Decimal | None = None
    for fill in fills:
        if order.side == Side.BID:
            cost = fill.funds + fill.fee
            new_volume = pos.volume + fill.volume
            pos.avg_buy_price = ((pos.volume * pos.avg_buy_price + cost) / new_volume).quantize(
                AVG_PRICE_QUANTUM
            )
            pos.volume = new_volume
            fill.realized_pnl = ZERO
            continue
        # Coins our own fills did not buy (deposited, or bought before OBservator) are valued at the
        # exchange's average buy price when known, else at the sale price (no P&L but the fee).
        covered = min(pos.volume, fill.volume)
        outside = fill.volume - covered
        if outside > 0 and outside_basis is None:
            outside_basis = _exchange_avg_price(order=order, currency=currency)
        basis_total = covered * pos.avg_buy_price + outside * (outside_basis or fill.price)
        realized = (fill.funds - fill.fee - basis_total).quantize(VOLUME_QUANTUM)
        fill.realized_pnl = realized
        pos.realized_pnl += realized
        pos.volume = max(ZERO, pos.volume - fill.volume)
        if pos.volume == 0:
            pos.avg_buy_price = ZERO
    pos.save()


def _exchange_avg_price(*, order: Order, currency: str) -> Decimal | None:
    """The exchange's own average buy price for a currency, without a network call (paper ledger, or the
    live balances already cached)."""
    if order.mode == TradingMode.PAPER:
        qs = PaperBalance.objects.filter(user_id=order.user_id, currency=currency).only("avg_buy_price")
        row = qs.first()
        return row.avg_buy_price if row is not None and row.avg_buy_price > 0 else None
    cached = cache.get(live_balances_cache_key(order.user_id)) or []
    avg = next((b.avg_buy_price for b in cached if b.currency == currency), None)
    return avg if avg else None


def order_sync(*, order: Order, exchange: Exchange | None = None) -> Order:
    """Re-read one order from its exchange (by uuid, or by our identifier while it is pending)."""
    exchange = exchange or exchange_for(user=order.user, mode=order.mode)
    try:
        if order.exchange_uuid:
            answer = exchange.get_order(uuid=order.exchange_uuid)
        else:
            answer = exchange.get_order(identifier=order.idempotency_key)
    except errors.ExchangeOrderNotFound:
        if order.state == OrderState.PENDING and timezone.now() - order.created_at > PENDING_GRACE:
            # Never reached the exchange (crash before the request left): close it, nothing was placed.
            _reject(order, errors.ExchangeRejected(_("The order never reached the exchange.")))
            order.refresh_from_db()
        return order
    return order_apply_exchange_state(order=order, answer=answer)


def order_refresh_if_stale(*, order: Order, max_age: dt.timedelta = dt.timedelta(seconds=2)) -> Order:
    """Re-read an open order from its exchange when the last look is older than ``max_age`` (order detail
    view); exchange trouble leaves the stored state as it is."""
    if order.state not in OPEN_ORDER_STATES:
        return order
    if order.last_synced_at and timezone.now() - order.last_synced_at < max_age:
        return order
    if order.state == OrderState.PENDING and timezone.now() - order.created_at < dt.timedelta(seconds=5):
        return order  # still being placed by the request that created it
    try:
        order = order_sync(order=order)
    except ApplicationError:
        return order
    return Order.objects.prefetch_related("fills").get(pk=order.pk)


def live_orders_refresh(*, max_age: dt.timedelta = dt.timedelta(seconds=5), limit: int = 20) -> int:
    """Re-read the open live orders not looked at for ``max_age`` (the oldest first, ``limit`` per run), so
    fills of resting orders reach the user within seconds without hammering Upbit's rate limits."""
    cutoff = timezone.now() - max_age
    qs = (
        Order.objects.filter(mode=TradingMode.LIVE, state=OrderState.OPEN)
        .filter(models.Q(last_synced_at__isnull=True) | models.Q(last_synced_at__lt=cutoff))
        .select_related("user")
        .order_by("last_synced_at", "id")[:limit]
    )
    changed = 0
    for order in qs:
        before = (order.state, order.executed_volume)
        try:
            after = order_sync(order=order)
        except ApplicationError as exc:
            logger.warning("refresh of live order %s failed: %s", order.pk, exc.code)
            Order.objects.filter(pk=order.pk).update(last_synced_at=timezone.now())
            continue
        changed += int((after.state, after.executed_volume) != before)
    return changed


def orders_reconcile(*, user: Any | None = None, mode: str | None = None) -> dict[str, int]:
    """Settle every ``pending``/``open`` order with its exchange (start-up and periodic). Errors on one
    user's exchange (bad keys, Upbit down) are logged and skipped; counts by outcome are returned."""
    qs = Order.objects.filter(state__in=OPEN_ORDER_STATES).select_related("user").order_by("user_id", "id")
    if user is not None:
        qs = qs.filter(user=user)
    if mode is not None:
        qs = qs.filter(mode=mode)
    counts = {"checked": 0, "changed": 0, "errors": 0}
    exchanges: dict[tuple[int, str], Exchange | None] = {}
    for order in qs:
        key = (order.user_id, order.mode)
        if key not in exchanges:
            try:
                exchanges[key] = exchange_for(user=order.user, mode=order.mode)
            except ApplicationError:
                exchanges[key] = None
        exchange = exchanges[key]
        if exchange is None:
            counts["errors"] += 1
            continue
        before = (order.state, order.executed_volume)
        try:
            after = order_sync(order=order, exchange=exchange)
        except ApplicationError as exc:
            logger.warning("reconcile order %s: %s", order.pk, exc.code)
            counts["errors"] += 1
            continue
        counts["checked"] += 1
        if (after.state, after.executed_volume) != before:
            counts["changed"] += 1
    return counts


# ----------------------------------------------------------------------------------------------------------
# Cancel
# ----------------------------------------------------------------------------------------------------------


def order_cancel(*, user: Any, order_id: int, exchange: Exchange | None = None) -> Order:
    """Cancel an open order of this user (404 for anyone else's)."""
    order = Order.objects.filter(user=user, pk=order_id).first()
    if order is None:
        raise NotFound(_("Order not found."))
    if order.state not in OPEN_ORDER_STATES:
        raise errors.OrderNotCancelable()
    exchange = exchange or exchange_for(user=user, mode=order.mode)
    try:
        if order.exchange_uuid:
            answer = exchange.cancel_order(uuid=order.exchange_uuid)
        else:
            answer = exchange.cancel_order(identifier=order.idempotency_key)
    except (errors.OrderNotCancelable, errors.ExchangeRejected, errors.InvalidOrder):
        # Filled or cancelled meanwhile: show the truth, and say so.
        order = order_sync(order=order, exchange=exchange)
        raise errors.OrderNotCancelable() from None
    except errors.ExchangeOrderNotFound:
        order = order_sync(order=order, exchange=exchange)
        raise errors.OrderNotCancelable(
            _("The exchange has no open order for this; it was not placed.")
        ) from None
    if answer.is_open:
        # Upbit cancels asynchronously; one re-read usually shows the final state.
        try:
            answer = exchange.get_order(uuid=answer.uuid)
        except ApplicationError:
            pass
    return order_apply_exchange_state(order=order, answer=answer)


def orders_cancel_all(*, user: Any | None = None) -> dict[str, int]:
    """Cancel every open order (of one user, or everyone's: the kill switch)."""
    qs = Order.objects.filter(state__in=OPEN_ORDER_STATES).select_related("user")
    if user is not None:
        qs = qs.filter(user=user)
    counts = {"cancelled": 0, "failed": 0}
    for order in qs:
        try:
            order_cancel(user=order.user, order_id=order.pk)
            counts["cancelled"] += 1
        except ApplicationError as exc:
            logger.warning("cancel order %s failed: %s", order.pk, exc.code)
            counts["failed"] += 1
    return counts
