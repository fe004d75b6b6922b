"""The paper exchange: per-user virtual balances in the database, orders filled against the current live
order book (the collector's stream; REST when that is stale: ``marketdata.orderbook_for_fill``) by walking
its levels, with Upbit's fee (0.05 % a side, in KRW), tick sizes and 5,000 KRW
minimum. Limit orders that rest are filled later by :func:`paper_match_market` as the market trades at or
through their price, or the book moves across it. The ``PaperTrade`` rows are the ledger of fills.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid as uuid_mod
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from market.upbit.errors import upbit_error
from market.upbit.protocol import MAX_ORDER_TOTAL_KRW, quantize_volume
from market.upbit.rules import order_grid_error, order_total_error
from trading import errors, marketdata
from trading.exchanges import matching
from trading.exchanges.base import (
    Balance,
    Book,
    ExchangeOrder,
    ExchangeTrade,
    OrderChance,
)
from trading.models import PaperBalance, PaperOrder, PaperTrade

ZERO = Decimal(0)
BALANCE_FIELDS = ["balance", "locked", "avg_buy_price"]
BookSource = Callable[[str], Book]
TradesSource = Callable[[str], list[Any]]


def fee_rate() -> Decimal:
    return settings.UPBIT_FEE_RATE


def min_total() -> Decimal:
    return Decimal(settings.UPBIT_MIN_ORDER_KRW)


def _default_book(market: str) -> Book:
    return marketdata.orderbook_for_fill(market=market)


def _default_trades(market: str) -> list[Any]:
    return marketdata.recent_trades(market=market, count=100)


def paper_account_ensure(*, user: Any) -> None:
    """Open the virtual account with settings.PAPER_STARTING_KRW on first use."""
    PaperBalance.objects.get_or_create(
        user=user, currency="KRW", defaults={"balance": Decimal(str(settings.PAPER_STARTING_KRW))}
    )


def paper_account_wipe(*, user: Any) -> None:
    """The virtual account back to settings.PAPER_STARTING_KRW (open paper orders must be cancelled first)."""
    with transaction.atomic():
        PaperOrder.objects.filter(user=user, state="wait").update(state="cancel", locked=ZERO)
        PaperBalance.objects.filter(user=user).delete()
        paper_account_ensure(user=user)


class PaperExchange:
    mode = "paper"

    def __init__(
        self, user: Any, *, book_source: BookSource | None = None, trades_source: TradesSource | None = None
    ) -> None:
        self.user = user
        self.book_source = book_source or _default_book
        self.trades_source = trades_source or _default_trades

    # -- reads -------------------------------------------------------------------------------------------

    def balances(self) -> list[Balance]:
        paper_account_ensure(user=self.user)
        rows = PaperBalance.objects.filter(user=self.user).order_by("currency")
        return [
            Balance(currency=b.currency, balance=b.balance, locked=b.locked, avg_buy_price=b.avg_buy_price)
            for b in rows
            if b.currency == "KRW" or b.balance > 0 or b.locked > 0
        ]

    def _balances_of(self, currencies: list[str]) -> dict[str, Balance]:
        """The account's rows of these currencies in one query (zero where it has none); the KRW account is
        opened on first use."""
        rows = {b.currency: b for b in PaperBalance.objects.filter(user=self.user, currency__in=currencies)}
        if "KRW" in currencies and "KRW" not in rows:
            paper_account_ensure(user=self.user)
            rows = {
                b.currency: b for b in PaperBalance.objects.filter(user=self.user, currency__in=currencies)
            }
        out = {}
        for c in currencies:
            b = rows.get(c)
            out[c] = (
                Balance(currency=c, balance=b.balance, locked=b.locked, avg_buy_price=b.avg_buy_price)
                if b is not None
                else Balance(currency=c, balance=ZERO, locked=ZERO, avg_buy_price=ZERO)
            )
        return out

    def _balance(self, currency: str) -> Balance:
        return self._balances_of([currency])[currency]

    def order_chance(self, *, market: str) -> OrderChance:
        quote, base = market.split("-", 1)
        bals = self._balances_of([quote, base])
        return OrderChance(
            market=market,
            bid_fee=fee_rate(),
            ask_fee=fee_rate(),
            min_total=min_total(),
            max_total=MAX_ORDER_TOTAL_KRW,
            bid_balance=bals[quote],
            ask_balance=bals[base],
        )

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder:
        order = self._find(uuid=uuid, identifier=identifier)
        return _wire(order, with_trades=True)

    def open_orders(self, *, market: str | None = None) -> list[ExchangeOrder]:
        qs = PaperOrder.objects.filter(user=self.user, state="wait")
        if market:
            qs = qs.filter(market=market)
        return [_wire(o, with_trades=False) for o in qs.order_by("created_at")]

    def _find(self, *, uuid: str | None, identifier: str | None) -> PaperOrder:
        qs = PaperOrder.objects.filter(user=self.user)
        order = qs.filter(uuid=uuid).first() if uuid else qs.filter(identifier=identifier).first()
        if order is None:
            raise errors.ExchangeOrderNotFound()
        return order

    # -- writes ------------------------------------------------------------------------------------------

    def book(self, market: str) -> Book:
        """The book a fill of ``market`` is priced on now (read it before any transaction or lock)."""
        return self.book_source(market)

    def place_order(
        self,
        *,
        market: str,
        side: str,
        ord_type: str,
        volume: Decimal | None,
        price: Decimal | None,
        identifier: str,
    ) -> ExchangeOrder:
        # The book is read before any lock is taken: a slow market-data call must not hold row locks.
        book = self.book(market)
        answer, _rows = self.place_order_on(
            book=book,
            market=market,
            side=side,
            ord_type=ord_type,
            volume=volume,
            price=price,
            identifier=identifier,
        )
        return answer

    def place_order_on(
        self,
        *,
        book: Book,
        market: str,
        side: str,
        ord_type: str,
        volume: Decimal | None,
        price: Decimal | None,
        identifier: str,
        savepoint: bool = True,
    ) -> tuple[ExchangeOrder, list[PaperBalance]]:
        """Place an order against ``book`` (read beforehand with :meth:`book`); returns the answer and every
        balance row of the account after the order, in currency order.

        ``savepoint=False``: the caller's own ``atomic`` block holds this in its transaction (no savepoint:
        a failure here fails the caller's block, which rolls back as the exception leaves it), so the order,
        its fills and the caller's rows commit together or not at all."""
        quote, base = market.split("-", 1)
        rate = fee_rate()
        _check_params(side=side, ord_type=ord_type, volume=volume, price=price)
        now_ms = int(time.time() * 1000)
        made: list[PaperTrade] = []
        try:
            with transaction.atomic(savepoint=savepoint):
                rows = _lock_balances(self.user, [quote, base], every=True)
                krw, coin = rows[quote], rows[base]
                order = PaperOrder(
                    user=self.user,
                    uuid=str(uuid_mod.uuid4()),
                    identifier=identifier,
                    market=market,
                    side=side,
                    ord_type=ord_type,
                    price=price,
                    volume=volume,
                    state="wait",
                    trades_seen_ms=now_ms,
                    book_seen_ms=book.ts,
                    book_source=book.source,
                    book_age_ms=book.age_ms,
                )
                if side == "bid":
                    total = price if ord_type == "price" else price * volume  # type: ignore[operator]
                    assert total is not None  # _check_params: a bid always has a price
                    _check_total(total, side)
                    reserve = matching.fee_for(total, rate)
                    if krw.balance < total + reserve:
                        raise errors.InsufficientFunds(
                            _(
                                "Not enough KRW: this order needs %(need)s KRW including the fee; "
                                "%(have)s KRW is available."
                            )
                            % {"need": f"{total + reserve:,.0f}", "have": f"{krw.balance:,.0f}"}
                        )
                    krw.balance -= total + reserve
                    krw.locked += total + reserve
                    order.locked, order.reserved_fee, order.remaining_fee = total + reserve, reserve, reserve
                else:
                    est_price = price if ord_type == "limit" else (book.bids[0][0] if book.bids else ZERO)
                    if ord_type == "market" and not book.bids:
                        raise errors.InvalidOrder(_("There are no buyers on the order book right now."))
                    _check_total(est_price * volume, side)  # type: ignore[operator]
                    if coin.balance < volume:  # type: ignore[operator]
                        raise errors.InsufficientFunds(
                            _("Not enough %(coin)s: %(have)s is available.")
                            % {"coin": base, "have": format(coin.balance.normalize(), "f")}
                        )
                    coin.balance -= volume  # type: ignore[operator]
                    coin.locked += volume  # type: ignore[operator]
                    order.locked = volume  # type: ignore[assignment]
                order.remaining_volume = volume
                if ord_type == "price" and matching.side_depth_funds(book.asks) < price:  # type: ignore[operator]
                    raise errors.InvalidOrder(_("The order is larger than all the offers on the order book."))
                if ord_type == "market" and matching.side_depth_volume(book.bids) < volume:  # type: ignore[operator]
                    raise errors.InvalidOrder(_("The order is larger than all the bids on the order book."))
                fills = _taker_fills(order, book)
                ts = timezone.now()
                for fprice, fvol in fills:
                    made.append(
                        _apply_fill(
                            order, krw, coin, fprice, fvol, is_maker=False, at=ts, rate=rate, save=False
                        )
                    )
                if ord_type in ("price", "market") or order.remaining_volume == 0:
                    _close(order, krw, coin, "done" if _fully_filled(order) else "cancel")
                order.save()  # once, in its final state; then its fills in one statement
                PaperTrade.objects.bulk_create(made)
                krw.save(update_fields=BALANCE_FIELDS)
                coin.save(update_fields=BALANCE_FIELDS)
        except IntegrityError:
            # Upbit refuses a reused identifier (unique forever per account); so does the paper exchange.
            raise errors.ExchangeRejected(_("This order identifier was already used.")) from None
        # Its trades are the ones just made: no re-read.
        return _wire(order, with_trades=True, trades=made), [rows[c] for c in sorted(rows)]

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> ExchangeOrder:
        found = self._find(uuid=uuid, identifier=identifier)
        with transaction.atomic():
            order = PaperOrder.objects.select_for_update().get(pk=found.pk)
            if order.state != "wait":
                raise errors.OrderNotCancelable()
            quote, base = order.market.split("-", 1)
            bals = _lock_balances(self.user, [quote, base])
            _close(order, bals[quote], bals[base], "cancel")
            order.save()
            bals[quote].save()
            bals[base].save()
        return _wire(order, with_trades=True)


def _check_params(*, side: str, ord_type: str, volume: Decimal | None, price: Decimal | None) -> None:
    ok = (
        (ord_type == "limit" and side in ("bid", "ask") and volume is not None and price is not None)
        or (ord_type == "price" and side == "bid" and price is not None and volume is None)
        or (ord_type == "market" and side == "ask" and volume is not None and price is None)
    )
    if not ok:
        raise errors.InvalidOrder(_("These order parameters do not fit the order type."))
    if volume is not None and volume <= 0:
        raise errors.InvalidVolume()
    if price is not None and price <= 0:
        raise errors.InvalidOrder(_("The price must be positive."))
    broken = order_grid_error(side=side, ord_type=ord_type, price=price, volume=volume)
    if broken is not None:
        raise errors.from_upbit(upbit_error(broken))


def _check_total(total: Decimal, side: str) -> None:
    broken = order_total_error(side=side, total=total, min_total=min_total())
    if broken is not None:
        raise errors.from_upbit(upbit_error(broken))


def _lock_balances(user: Any, currencies: list[str], *, every: bool = False) -> dict[str, PaperBalance]:
    """Lock the account's rows of these currencies (in a fixed order), opening missing ones first: KRW with
    the starting balance, others at zero. ``every``: lock and return all of the account's rows (one query
    still; an order already serializes on the KRW row, and the caller gets every balance without a re-read).
    """

    def locked() -> dict[str, PaperBalance]:
        qs = PaperBalance.objects.select_for_update().filter(user=user)
        if not every:
            qs = qs.filter(currency__in=currencies)
        return {b.currency: b for b in qs.order_by("currency")}

    rows = locked()
    if all(c in rows for c in currencies):
        return rows  # the common case: one query
    for c in currencies:
        if c == "KRW":
            paper_account_ensure(user=user)
        else:
            PaperBalance.objects.get_or_create(user=user, currency=c)
    return locked()


def _taker_fills(order: PaperOrder, book: Book) -> list[tuple[Decimal, Decimal]]:
    if order.ord_type == "price":
        return matching.walk_buy_funds(book.asks, order.price)  # type: ignore[arg-type]
    if order.ord_type == "market":
        return matching.walk_volume(book.bids, order.volume, side="ask")  # type: ignore[arg-type]
    levels = book.asks if order.side == "bid" else book.bids
    return matching.walk_volume(levels, order.volume, order.price, side=order.side)  # type: ignore[arg-type]


def _apply_fill(
    order: PaperOrder,
    krw: PaperBalance,
    coin: PaperBalance,
    price: Decimal,
    volume: Decimal,
    *,
    is_maker: bool,
    at: dt.datetime,
    rate: Decimal,
    save: bool = True,
) -> PaperTrade:
    """Apply one fill to the order and the balances (not saved); returns its ledger row, saved unless
    ``save`` is False (the caller saves the order first, then the rows)."""
    funds = price * volume
    fee = matching.fee_for(funds, rate)
    if order.side == "bid":
        # Release what this volume had reserved (at the limit price, or the exact spend for market buys),
        # pay the actual cost; the difference goes back to the available balance.
        reserved = (
            funds + fee
            if order.ord_type == "price"
            else order.price * volume + matching.fee_for(order.price * volume, rate)
        )  # type: ignore[operator]
        reserved = min(reserved, order.locked)
        krw.locked -= reserved
        krw.balance += reserved - funds - fee
        order.locked -= reserved
        order.remaining_fee = max(ZERO, order.remaining_fee - fee)
        held = coin.balance + coin.locked
        coin.avg_buy_price = (
            ((held * coin.avg_buy_price + funds) / (held + volume)).quantize(matching.AVG_PRICE_QUANTUM)
            if held + volume > 0
            else ZERO
        )
        coin.balance += volume
    else:
        coin.locked -= volume
        order.locked -= volume
        krw.balance += funds - fee
        # The average buy price is kept when the balance reaches zero (the next buy starts it afresh);
        # realized P&L of coins bought outside our own fills is measured against it.
    order.executed_volume += volume
    order.executed_funds += funds
    order.paid_fee += fee
    if order.remaining_volume is not None:
        order.remaining_volume -= volume
    trade = PaperTrade(
        order=order,
        uuid=str(uuid_mod.uuid4()),
        price=price,
        volume=volume,
        funds=funds,
        fee=fee,
        is_maker=is_maker,
        created_at=at,
    )
    if save:
        trade.save()
    return trade


def _fully_filled(order: PaperOrder) -> bool:
    if order.ord_type == "price":
        return order.executed_funds >= order.price  # type: ignore[operator]
    return order.remaining_volume is not None and order.remaining_volume <= 0


def _close(order: PaperOrder, krw: PaperBalance, coin: PaperBalance, state: str) -> None:
    """Finish an order and hand back whatever it still holds."""
    if order.locked > 0:
        if order.side == "bid":
            krw.locked -= order.locked
            krw.balance += order.locked
        else:
            coin.locked -= order.locked
            coin.balance += order.locked
    order.locked = ZERO
    order.remaining_fee = ZERO
    order.state = state


def paper_match_market(
    *, market: str, book: Book | None = None, trades: list[Any] | None = None, now: dt.datetime | None = None
) -> list[PaperOrder]:
    """Fill resting paper limit orders of one market from the current book and the public trades since each
    order last looked; returns the orders that changed. Safe to run concurrently (rows are locked)."""
    ids = list(
        PaperOrder.objects.filter(market=market, state="wait", ord_type="limit").values_list("id", flat=True)
    )
    if not ids:
        return []
    book = book if book is not None else _default_book(market)
    trades = trades if trades is not None else _default_trades(market)
    rate = fee_rate()
    at = now or timezone.now()
    changed: list[PaperOrder] = []
    quote, base = market.split("-", 1)
    for pk in ids:
        with transaction.atomic():
            order = PaperOrder.objects.select_for_update().filter(pk=pk, state="wait").first()
            if order is None:
                continue
            limit = order.price
            opposite = book.asks if order.side == "bid" else book.bids
            crossed = ZERO
            if book.ts > order.book_seen_ms:  # a book it has not traded against yet
                crossed = matching.crossed_volume(opposite, limit, side=order.side)  # type: ignore[arg-type]
                order.book_seen_ms = book.ts
            fresh = [t for t in trades if t.ts > order.trades_seen_ms]
            through = matching.traded_through_volume(
                ((t.price, t.volume) for t in fresh),
                limit,
                side=order.side,  # type: ignore[arg-type]
            )
            if fresh:
                order.trades_seen_ms = max(t.ts for t in fresh)
            qty = quantize_volume(min(order.remaining_volume or ZERO, max(crossed, through)))
            if qty > 0:
                bals = _lock_balances(order.user, [quote, base])
                krw, coin = bals[quote], bals[base]
                # A resting order is the maker: it trades at its own price.
                _apply_fill(order, krw, coin, limit, qty, is_maker=True, at=at, rate=rate)  # type: ignore[arg-type]
                if order.remaining_volume is not None and order.remaining_volume <= 0:
                    _close(order, krw, coin, "done")
                krw.save()
                coin.save()
                changed.append(order)
            order.save()
    return changed


def _wire(order: PaperOrder, *, with_trades: bool, trades: list[PaperTrade] | None = None) -> ExchangeOrder:
    wired = None
    if with_trades:
        wired = [
            ExchangeTrade(
                uuid=t.uuid, price=t.price, volume=t.volume, funds=t.funds, created_at=t.created_at, fee=t.fee
            )
            for t in (trades if trades is not None else order.trades.all())
        ]
    return ExchangeOrder(
        uuid=order.uuid,
        identifier=order.identifier,
        market=order.market,
        side=order.side,
        ord_type=order.ord_type,
        state=order.state,
        price=order.price,
        volume=order.volume,
        remaining_volume=order.remaining_volume,
        executed_volume=order.executed_volume,
        paid_fee=order.paid_fee,
        executed_funds=order.executed_funds,
        trades=wired,
        created_at=order.created_at,
        book_source=order.book_source,
        book_age_ms=order.book_age_ms,
    )
