"""Reads of the trading app: profile, orders, scheduled orders, balances and the portfolio with P&L.

Everything is scoped to its owner. Live balances come from Upbit at most once per ~5 s per user (cached;
the original prototype polled /v1/accounts every second per user); paper balances from the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError, NotFound
from trading import marketdata
from trading.cache_keys import LIVE_BALANCES_TTL, live_balances_cache_key
from trading.exchanges import exchange_for
from trading.exchanges.base import Balance
from trading.messages import OrderData, ScheduledOrderData
from trading.models import (
    Fill,
    Order,
    Position,
    ScheduledOrder,
    Side,
    TradingMode,
    TradingProfile,
    TradingSwitch,
)

ZERO = Decimal(0)
Q8 = Decimal("0.00000001")


def profile_get(*, user: Any) -> TradingProfile:
    """The user's profile; before its first write (``trading_profile_ensure``) an unsaved one with the
    defaults it will be created with. Reads only."""
    profile = TradingProfile.objects.filter(user=user).first()
    return profile if profile is not None else TradingProfile(user=user, **TradingProfile.defaults_for(user))


def kill_switch_engaged() -> bool:
    return TradingSwitch.objects.filter(pk=1, engaged=True).exists()


def order_list(
    *,
    user: Any,
    state: str | None = None,
    source: str | None = None,
    market: str | None = None,
    mode: str | None = None,
) -> QuerySet[Order]:
    qs = Order.objects.filter(user=user).prefetch_related("fills")
    if state == "open":
        qs = qs.filter(state__in=("pending", "open"))
    elif state:
        qs = qs.filter(state=state)
    if source:
        qs = qs.filter(source=source)
    if market:
        qs = qs.filter(market=market.upper())
    if mode:
        qs = qs.filter(mode=mode)
    return qs


def order_get(*, user: Any, order_id: int) -> Order:
    order = Order.objects.filter(user=user, pk=order_id).prefetch_related("fills").first()
    if order is None:
        raise NotFound(_("Order not found."))
    return order


def scheduled_order_list(*, user: Any, state: str | None = None) -> QuerySet[ScheduledOrder]:
    qs = ScheduledOrder.objects.filter(user=user)
    if state:
        qs = qs.filter(state=state)
    return qs


def scheduled_order_get(*, user: Any, scheduled_order_id: int) -> ScheduledOrder:
    so = ScheduledOrder.objects.filter(user=user, pk=scheduled_order_id).first()
    if so is None:
        raise NotFound(_("Scheduled order not found."))
    return so


def balances_get(*, user: Any, mode: str | None = None) -> list[Balance]:
    mode = mode or profile_get(user=user).mode
    if mode == TradingMode.LIVE:
        key = live_balances_cache_key(user.pk)
        hit = cache.get(key)
        if hit is not None:
            return hit
        balances = exchange_for(user=user, mode=mode).balances()
        cache.set(key, balances, LIVE_BALANCES_TTL)
        return balances
    return exchange_for(user=user, mode=mode).balances()


@dataclass
class Holding:
    currency: str
    market: str
    balance: Decimal
    locked: Decimal
    volume: Decimal
    avg_buy_price: Decimal
    price: Decimal | None
    value_krw: Decimal | None
    cost_krw: Decimal
    unrealized_pnl: Decimal | None
    unrealized_pnl_rate: Decimal | None


@dataclass
class Portfolio:
    mode: str
    krw_balance: Decimal
    krw_locked: Decimal
    holdings: list[Holding] = field(default_factory=list)
    total_assets_krw: Decimal = ZERO
    invested_krw: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    pnl_today: Decimal | None = None
    pnl_total: Decimal = ZERO
    prices_available: bool = True
    as_of: dt.datetime = field(default_factory=timezone.now)


def trading_day_start(now: dt.datetime | None = None) -> dt.datetime:
    """Upbit's trading day (and the ticker's ``opening_price``) starts at 00:00 UTC (09:00 KST)."""
    now = now or timezone.now()
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _cost_basis(*, volume: Decimal, exchange_avg: Decimal, position: Position | None) -> Decimal:
    """What the held volume cost, buy fees included: our own fills at their fee-inclusive average (the
    Position), coins they do not cover (deposited, bought elsewhere) at the exchange's average price."""
    covered = min(position.volume, volume) if position is not None else ZERO
    own = covered * position.avg_buy_price if position is not None else ZERO
    return (own + (volume - covered) * exchange_avg).quantize(Q8)


def portfolio_get(*, user: Any, mode: str | None = None) -> Portfolio:
    """Holdings with average buy price, value and unrealized P&L; totals; realized P&L (our fills, fees
    included) and P&L today = value now - value at the day's open, net of today's own trades.

    One basis for every figure, so Total, P&L today and P&L total move together: each coin is marked at
    the ticker's last trade price (as Upbit values holdings), and fees count wherever money changed hands
    (the cost basis of unrealized P&L includes buy fees, as P&L today's cash flows and realized P&L do).
    ``avg_buy_price`` stays the exchange's own figure (Upbit's excludes fees).
    """
    mode = mode or profile_get(user=user).mode
    balances = balances_get(user=user, mode=mode)
    krw = next((b for b in balances if b.currency == "KRW"), Balance("KRW", ZERO, ZERO, ZERO))
    coins = [b for b in balances if b.currency != "KRW" and b.total > 0]

    day_start = trading_day_start()
    today = list(
        Fill.objects.filter(order__user=user, order__mode=mode, executed_at__gte=day_start)
        .select_related("order")
        .only("volume", "funds", "fee", "order__side", "order__market")
    )
    net_qty: dict[str, Decimal] = {}
    cash_today = ZERO
    for f in today:
        cur = f.order.market.split("-", 1)[1]
        if f.order.side == Side.BID:
            net_qty[cur] = net_qty.get(cur, ZERO) + f.volume
            cash_today -= f.funds + f.fee
        else:
            net_qty[cur] = net_qty.get(cur, ZERO) - f.volume
            cash_today += f.funds - f.fee

    markets = sorted({f"KRW-{b.currency}" for b in coins} | {f"KRW-{c}" for c in net_qty})
    prices_available = True
    tickers: dict[str, marketdata.Ticker] = {}
    if markets:
        try:
            known = marketdata.market_codes()
            tickers = marketdata.tickers_get(markets=[m for m in markets if m in known])
        except ApplicationError:
            prices_available = False

    positions = {
        p.currency: p
        for p in Position.objects.filter(user=user, mode=mode).only(
            "currency", "volume", "avg_buy_price", "realized_pnl"
        )
    }
    holdings: list[Holding] = []
    total = krw.total
    unrealized = ZERO
    invested = ZERO
    pnl_today: Decimal | None = cash_today
    held_now: dict[str, Decimal] = {}
    for b in coins:
        market = f"KRW-{b.currency}"
        t = tickers.get(market)
        price = t.price if t else None
        cost = _cost_basis(volume=b.total, exchange_avg=b.avg_buy_price, position=positions.get(b.currency))
        value = (b.total * price).quantize(Q8) if price is not None else None
        upnl = (value - cost) if value is not None else None
        rate = (upnl / cost).quantize(Decimal("0.0001")) if upnl is not None and cost > 0 else None
        holdings.append(
            Holding(
                b.currency,
                market,
                b.balance,
                b.locked,
                b.total,
                b.avg_buy_price,
                price,
                value,
                cost,
                upnl,
                rate,
            )
        )
        held_now[b.currency] = b.total
        invested += cost
        if value is not None:
            total += value
            unrealized += upnl  # type: ignore[operator]
    for cur in set(held_now) | set(net_qty):
        t = tickers.get(f"KRW-{cur}")
        qty_now = held_now.get(cur, ZERO)
        qty_start = qty_now - net_qty.get(cur, ZERO)
        if t is None or pnl_today is None:
            if qty_now != 0 or qty_start != 0:
                pnl_today = None
            continue
        pnl_today += qty_now * t.price - qty_start * t.opening_price
    realized = sum((p.realized_pnl for p in positions.values()), ZERO)
    return Portfolio(
        mode=mode,
        krw_balance=krw.balance,
        krw_locked=krw.locked,
        holdings=holdings,
        total_assets_krw=total.quantize(Q8),
        invested_krw=invested,
        realized_pnl=realized,
        unrealized_pnl=unrealized.quantize(Q8),
        pnl_total=(realized + unrealized).quantize(Q8),
        pnl_today=pnl_today.quantize(Q8) if pnl_today is not None else None,
        prices_available=prices_available and all(h.price is not None for h in holdings),
    )


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def order_event_data(*, order: Order) -> OrderData:
    """The compact order of the ``order`` user event (the REST serializer gives the full one)."""
    return OrderData(
        id=order.pk,
        mode=order.mode,
        market=order.market,
        side=order.side,
        ord_type=order.ord_type,
        price=_s(order.price),
        volume=_s(order.volume),
        state=order.state,
        source=order.source,
        executed_volume=_s(order.executed_volume),
        executed_funds=_s(order.executed_funds),
        paid_fee=_s(order.paid_fee),
        error_code=order.error_code,
        error_message=order.error_message,
    )


def scheduled_order_event_data(*, scheduled_order: ScheduledOrder) -> ScheduledOrderData:
    """The scheduled order of the ``scheduled_order`` user event."""
    so = scheduled_order
    return ScheduledOrderData(
        id=so.pk,
        mode=so.mode,
        market=so.market,
        side=so.side,
        ord_type=so.ord_type,
        state=so.state,
        failure_reason=so.failure_reason,
        order_id=so.order_id,
    )
