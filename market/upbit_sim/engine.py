"""Matching engine of the Upbit simulator: accounts, orders and fills against the market source's book.

Pure Python (no Django, no I/O); user money is ``Decimal``. The market source (synthetic model or replay)
owns the public liquidity: the engine is told every new book (:meth:`MatchingEngine.on_book`) and every
public trade (:meth:`MatchingEngine.on_trade`). User orders:

* take liquidity from that book (walking levels best-first; user orders resting on the opposite side take
  part in price-time priority: at one price the source's liquidity is ahead of user orders, user orders
  among themselves go by arrival), at the level's price (taker);
* rest as ``wait`` if limit and not (fully) marketable; a resting order keeps an estimate of the source
  queue ahead of it (the book size at its price on entry, shrunk by later cancellations) and fills as maker
  at its own price when a public trade goes through its price, when trades at its price exhaust the queue
  ahead, or when the book moves across it.

Upbit rules (``market.upbit.protocol``): KRW tick grid, 5,000 KRW minimum, 1e9 KRW maximum, 0.05 % fee per
side charged in KRW (bids reserve ``price*volume*fee`` and lock ``price*volume + fee``; asks lock the base
volume and pay the fee out of the proceeds), ``identifier`` unique forever per account, states
``wait``/``done``/``cancel`` (``watch`` exists only as a filter: stop orders are not simulated).
"""

from __future__ import annotations

import bisect
import itertools
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from market.upbit.errors import upbit_error
from market.upbit.protocol import (
    FEE_RATE,
    KRW_TICK_TABLE,
    MAX_ORDER_TOTAL_KRW,
    MIN_ORDER_TOTAL_KRW,
    VOLUME_QUANTUM,
    TickTable,
    decimal_str,
    iso_kst,
    parse_decimal,
)
from market.upbit.rules import order_rule_error

ZERO = Decimal(0)
OPEN_STATES = ("wait", "watch")
CLOSED_STATES = ("done", "cancel")
ORD_TYPES = ("limit", "price", "market", "best")
TIME_IN_FORCE = ("ioc", "fok", "post_only")

Level = tuple[float, float]  # (price, size) as the market source publishes them


def now_ms() -> int:
    return int(time.time() * 1000)


def _dec(x: float) -> Decimal:
    """A float from the market source as a Decimal via its shortest repr (0.0513 -> Decimal("0.0513"))."""
    return Decimal(repr(float(x)))


def _qvol(v: Decimal) -> Decimal:
    return v.quantize(VOLUME_QUANTUM, rounding=ROUND_FLOOR)


@dataclass
class Balance:
    balance: Decimal = ZERO
    locked: Decimal = ZERO
    avg_buy_price: Decimal = ZERO
    avg_buy_price_modified: bool = False

    @property
    def total(self) -> Decimal:
        return self.balance + self.locked


@dataclass
class Account:
    account_id: str
    balances: dict[str, Balance] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)  # identifier -> order uuid ("" if it failed)
    order_uuids: list[str] = field(default_factory=list)

    def bal(self, currency: str) -> Balance:
        b = self.balances.get(currency)
        if b is None:
            b = self.balances[currency] = Balance()
        return b

    def wire_balance(self, currency: str) -> dict[str, Any]:
        b = self.balances.get(currency) or Balance()
        return {
            "currency": currency,
            "balance": decimal_str(b.balance),
            "locked": decimal_str(b.locked),
            "avg_buy_price": decimal_str(b.avg_buy_price),
            "avg_buy_price_modified": b.avg_buy_price_modified,
            "unit_currency": "KRW",
        }


@dataclass
class Fill:
    uuid: str
    market: str
    side: str  # the order's side
    price: Decimal
    volume: Decimal
    funds: Decimal
    fee: Decimal
    trend: str
    is_maker: bool
    ts: int

    def wire(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "uuid": self.uuid,
            "price": decimal_str(self.price),
            "volume": decimal_str(self.volume),
            "funds": decimal_str(self.funds),
            "trend": self.trend,
            "created_at": iso_kst(self.ts, micro=True),
            "side": self.side,
        }


@dataclass
class Order:
    uuid: str
    account_id: str
    market: str
    side: str  # bid / ask
    ord_type: str  # limit / price / market / best
    price: Decimal | None
    volume: Decimal | None
    created_ms: int
    seq: int
    time_in_force: str | None = None
    identifier: str | None = None
    smp_type: str | None = None
    state: str = "wait"
    remaining_volume: Decimal | None = None
    executed_volume: Decimal = ZERO
    executed_funds: Decimal = ZERO
    reserved_fee: Decimal = ZERO
    remaining_fee: Decimal = ZERO
    paid_fee: Decimal = ZERO
    locked: Decimal = ZERO
    trades: list[Fill] = field(default_factory=list)
    prevented_volume: Decimal = ZERO  # taken off by self-match prevention
    prevented_locked: Decimal = ZERO
    queue_ahead: float = 0.0  # source volume ahead of this resting order at its price
    done_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def avg_price(self) -> Decimal:
        return self.executed_funds / self.executed_volume if self.executed_volume else ZERO

    def wire(self, with_trades: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": decimal_str(self.price) if self.price is not None else None,
            "state": self.state,
            "market": self.market,
            "created_at": iso_kst(self.created_ms),
            "volume": decimal_str(self.volume) if self.volume is not None else None,
            "remaining_volume": (
                decimal_str(self.remaining_volume) if self.remaining_volume is not None else None
            ),
            "reserved_fee": decimal_str(self.reserved_fee),
            "remaining_fee": decimal_str(self.remaining_fee),
            "paid_fee": decimal_str(self.paid_fee),
            "locked": decimal_str(self.locked),
            "executed_volume": decimal_str(self.executed_volume),
            "executed_funds": decimal_str(self.executed_funds),
            "prevented_volume": decimal_str(self.prevented_volume),
            "prevented_locked": decimal_str(self.prevented_locked),
            "trades_count": len(self.trades),
        }
        if self.time_in_force:
            out["time_in_force"] = self.time_in_force
        if self.identifier is not None:
            out["identifier"] = self.identifier
        if self.smp_type:
            out["smp_type"] = self.smp_type
        if with_trades:
            out["trades"] = [t.wire() for t in self.trades]
        return out


@dataclass(frozen=True)
class Execution:
    """A match the engine made in which a user order was the taker: it is a public trade of the market."""

    market: str
    price: float
    volume: float
    ask_bid: str  # "BID" (buyer took asks) / "ASK"
    ts: int


@dataclass(frozen=True)
class OrderEvent:
    """A state change of a user order (for myOrder): ``state`` is wait / trade / done / cancel."""

    account_id: str
    order: Order
    state: str
    fill: Fill | None
    ts: int


@dataclass(frozen=True)
class AssetEvent:
    account_id: str
    currencies: tuple[str, ...]
    ts: int


EngineEvent = Execution | OrderEvent | AssetEvent


@dataclass
class _Book:
    asks: Sequence[Level] = ()
    bids: Sequence[Level] = ()
    ts: int = 0
    # Liquidity taken by user orders since this book arrived: (book side, price) -> volume.
    consumed: dict[tuple[str, float], float] = field(default_factory=dict)


class MatchingEngine:
    """All accounts and orders of one simulator; one book per market. Not thread-safe (one event loop)."""

    def __init__(
        self,
        markets: Iterable[str],
        *,
        fee_rate: Decimal = FEE_RATE,
        min_total: Decimal = MIN_ORDER_TOTAL_KRW,
        max_total: Decimal = MAX_ORDER_TOTAL_KRW,
        tick_table: TickTable | dict[str, TickTable] = KRW_TICK_TABLE,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.markets: list[str] = list(dict.fromkeys(markets))
        self.fee_rate = Decimal(fee_rate)
        self.min_total = Decimal(min_total)
        self.max_total = Decimal(max_total)
        self._tick_tables = tick_table
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self._books: dict[str, _Book] = {m: _Book() for m in self.markets}
        # Resting user orders per market and side, kept in priority order (best price, then seq).
        self._resting: dict[str, dict[str, list[tuple[tuple[Decimal, int], Order]]]] = {
            m: {"bid": [], "ask": []} for m in self.markets
        }
        self._last_price: dict[str, Decimal] = {}
        self._seq = itertools.count(1)
        self.listeners: list[Callable[[EngineEvent], None]] = []
        # Called as (market, book_side, price, volume) when a user order takes source liquidity, so a
        # generative source can remove it from its own book (market impact).
        self.liquidity_taken: Callable[[str, str, float, float], None] | None = None

    # ---------------------------------------------------------------------------------------------- setup

    def add_market(self, market: str) -> None:
        if market not in self._books:
            self.markets.append(market)
            self._books[market] = _Book()
            self._resting[market] = {"bid": [], "ask": []}

    def tick_table(self, market: str) -> TickTable:
        t = self._tick_tables
        if isinstance(t, dict):
            return t.get(market, KRW_TICK_TABLE)
        return t

    def account_create(
        self,
        *,
        krw: Decimal | str | int = ZERO,
        assets: dict[str, Any] | None = None,
        account_id: str | None = None,
    ) -> Account:
        """A new account. ``assets`` maps a currency to an amount, or to ``{"balance", "avg_buy_price"}``."""
        account_id = account_id or str(uuid_mod.uuid4())
        if account_id in self.accounts:
            raise ValueError(f"account {account_id} exists")
        acc = Account(account_id)
        acc.bal("KRW").balance = self._amount(krw)
        for currency, spec in (assets or {}).items():
            b = acc.bal(str(currency).upper())
            if isinstance(spec, dict):
                b.balance = self._amount(spec.get("balance", 0))
                b.avg_buy_price = self._amount(spec.get("avg_buy_price", 0))
            else:
                b.balance = self._amount(spec)
        self.accounts[account_id] = acc
        return acc

    @staticmethod
    def _amount(value: Any) -> Decimal:
        d = parse_decimal(value)
        if d is None or d < 0:
            raise ValueError(f"invalid amount {value!r}")
        return d

    def account_deposit(self, *, account_id: str, currency: str, amount: Decimal) -> Balance:
        b = self._account(account_id).bal(currency)
        b.balance += Decimal(amount)
        self._emit(AssetEvent(account_id, (currency,), self.clock()))
        return b

    def _account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise upbit_error("invalid_access_key") from None

    # ---------------------------------------------------------------------------------------------- reads

    def accounts_wire(self, account_id: str) -> list[dict[str, Any]]:
        acc = self._account(account_id)
        out = []
        for cur in sorted(acc.balances, key=lambda c: (c != "KRW", c)):
            b = acc.balances[cur]
            if cur == "KRW" or b.total > 0:
                out.append(acc.wire_balance(cur))
        return out

    def chance_wire(self, account_id: str, market: str) -> dict[str, Any]:
        acc = self._account(account_id)
        self._check_market(market)
        quote, base = market.split("-", 1)
        fee = decimal_str(self.fee_rate)
        return {
            "bid_fee": fee,
            "ask_fee": fee,
            "maker_bid_fee": fee,
            "maker_ask_fee": fee,
            "market": {
                "id": market,
                "name": f"{base}/{quote}",
                "order_types": ["limit"],
                "order_sides": ["ask", "bid"],
                "bid_types": ["limit", "price", "best_ioc", "best_fok", "limit_ioc", "limit_fok"],
                "ask_types": ["limit", "market", "best_ioc", "best_fok", "limit_ioc", "limit_fok"],
                "bid": {"currency": quote, "price_unit": None, "min_total": int(self.min_total)},
                "ask": {"currency": base, "price_unit": None, "min_total": int(self.min_total)},
                "max_total": decimal_str(self.max_total) + ".0",
                "state": "active",
            },
            "bid_account": acc.wire_balance(quote),
            "ask_account": acc.wire_balance(base),
        }

    def order_get(self, *, account_id: str, uuid: str | None = None, identifier: str | None = None) -> Order:
        acc = self._account(account_id)
        if (uuid is None) == (identifier is None):
            raise upbit_error("validation_error", "uuid 또는 identifier 중 하나만 입력해 주세요.")
        if identifier is not None:
            uuid = acc.identifiers.get(identifier) or None
        order = self.orders.get(uuid or "")
        if order is None or order.account_id != account_id:
            raise upbit_error("order_not_found")
        return order

    def orders_list(
        self,
        *,
        account_id: str,
        market: str | None = None,
        states: Sequence[str] = OPEN_STATES,
        uuids: Sequence[str] | None = None,
        identifiers: Sequence[str] | None = None,
        order_by: str = "desc",
        page: int = 1,
        limit: int = 100,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Order]:
        acc = self._account(account_id)
        wanted: set[str] | None = None
        if uuids:
            wanted = set(uuids)
        if identifiers:
            wanted = (wanted or set()) | {acc.identifiers[i] for i in identifiers if acc.identifiers.get(i)}
        out = []
        for u in acc.order_uuids:
            o = self.orders[u]
            if wanted is not None and u not in wanted:
                continue
            if market and o.market != market:
                continue
            if states and o.state not in states:
                continue
            ts = o.created_ms
            if start_ms is not None and ts < start_ms:
                continue
            if end_ms is not None and ts > end_ms:
                continue
            out.append(o)
        out.sort(key=lambda o: o.seq, reverse=(order_by != "asc"))
        start = max(0, (page - 1) * limit)
        return out[start : start + limit]

    def book_levels(self, market: str, *, include_users: bool = True) -> tuple[list[Level], list[Level], int]:
        """The public book: source liquidity (less what users took since it arrived) plus resting user
        orders, best first (asks ascending, bids descending)."""
        book = self._books[market]
        sides: dict[str, dict[float, float]] = {"ask": {}, "bid": {}}
        for side, levels in (("ask", book.asks), ("bid", book.bids)):
            acc = sides[side]
            for p, s in levels:
                if p > 0 and s > 0:
                    left = s - book.consumed.get((side, p), 0.0)
                    if left > 1e-12:
                        acc[p] = acc.get(p, 0.0) + left
            if include_users:
                for _, o in self._resting[market][side]:
                    if o.remaining_volume and o.price is not None:
                        p = float(o.price)
                        acc[p] = acc.get(p, 0.0) + float(o.remaining_volume)
        asks = sorted((p, round(s, 8)) for p, s in sides["ask"].items())
        bids = sorted(((p, round(s, 8)) for p, s in sides["bid"].items()), reverse=True)
        return asks, bids, book.ts

    def last_price(self, market: str) -> Decimal | None:
        return self._last_price.get(market)

    # ---------------------------------------------------------------------------------------------- events

    def _emit(self, event: EngineEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def _emit_assets(self, account_id: str, *currencies: str) -> None:
        self._emit(AssetEvent(account_id, tuple(dict.fromkeys(currencies)), self.clock()))

    # ---------------------------------------------------------------------------------------------- create

    def _check_market(self, market: str) -> None:
        if market not in self._books:
            raise upbit_error("notfoundmarket")

    def order_create(
        self,
        *,
        account_id: str,
        market: str | None,
        side: str | None,
        ord_type: str | None,
        price: Any = None,
        volume: Any = None,
        time_in_force: str | None = None,
        identifier: str | None = None,
        smp_type: str | None = None,
        dry_run: bool = False,
    ) -> Order:
        """Validate, lock funds, match, rest. Raises the typed error of Upbit's name (``upbit_error``).

        ``dry_run`` (``POST /v1/orders/test``): validate everything, place nothing, use no identifier."""
        acc = self._account(account_id)
        if identifier is not None:
            identifier = str(identifier)
            if not identifier or len(identifier) > 64:
                raise upbit_error("validation_error", "identifier는 1~64자여야 합니다.")
            if identifier in acc.identifiers:
                raise upbit_error("duplicate_identifier")
            if not dry_run:
                acc.identifiers[identifier] = ""  # used forever, even if this order fails (§6.4)
        missing = [n for n, v in (("market", market), ("side", side), ("ord_type", ord_type)) if not v]
        if missing:
            raise upbit_error("validation_error", ", ".join(f"{n} is missing" for n in missing))
        assert market is not None and side is not None and ord_type is not None
        if side not in ("bid", "ask"):
            raise upbit_error("validation_error", "side does not have a valid value")
        if ord_type not in ORD_TYPES:
            raise upbit_error("validation_error", "ord_type does not have a valid value")
        self._check_market(market)
        err = "create_bid_error" if side == "bid" else "create_ask_error"
        if time_in_force is not None and time_in_force not in TIME_IN_FORCE:
            raise upbit_error("invalid_time_in_force")
        if smp_type is not None and smp_type not in ("cancel_maker", "cancel_taker", "reduce"):
            raise upbit_error("validation_error", "smp_type does not have a valid value")
        p = parse_decimal(price) if price not in (None, "") else None
        v = parse_decimal(volume) if volume not in (None, "") else None
        if price not in (None, "") and (p is None or p <= 0 or p > MAX_ORDER_TOTAL_KRW * 1000):
            raise upbit_error("validation_error", "price does not have a valid value")
        if volume not in (None, "") and (v is None or v <= 0 or v > Decimal("1e12")):
            raise upbit_error("validation_error", "volume does not have a valid value")
        if v is not None and v != _qvol(v):
            raise upbit_error("validation_error", "volume은 소수점 8자리까지 입력 가능합니다.")

        # Parameter matrix (§6.4).
        if ord_type == "limit":
            if p is None or v is None:
                raise upbit_error("validation_error", "price and volume are required for limit orders")
            if time_in_force == "post_only" and smp_type:
                raise upbit_error("invalid_time_in_force", "post_only는 smp_type과 함께 사용할 수 없습니다.")
        elif ord_type == "price":
            if side != "bid" or v is not None or p is None or time_in_force:
                raise upbit_error(err)
        elif ord_type == "market":
            if side != "ask" or p is not None or v is None or time_in_force:
                raise upbit_error(err)
        else:  # best
            if time_in_force not in ("ioc", "fok"):
                raise upbit_error("invalid_time_in_force")
            if (side == "bid" and (p is None or v is not None)) or (
                side == "ask" and (v is None or p is not None)
            ):
                raise upbit_error(err)

        quote, base = market.split("-", 1)
        fee_rate = self.fee_rate
        # Rules: tick grid, min/max total, depth for market orders, balance.
        if ord_type == "limit":
            assert p is not None and v is not None
            total = p * v
        elif side == "bid":
            assert p is not None
            total = p
        else:
            assert v is not None
            best_bid = self._best_price(market, "bid", account_id)
            total = v * best_bid if best_bid is not None else ZERO
            if best_bid is None:
                raise upbit_error(err, "호가가 없어 시장가 주문을 할 수 없습니다.")
        broken = order_rule_error(
            side=side, ord_type=ord_type, price=p, volume=v, total=total,
            min_total=self.min_total, max_total=self.max_total, tick_table=self.tick_table(market),
        )  # fmt: skip
        if broken is not None:
            raise upbit_error(broken)
        if ord_type in ("price", "market"):
            depth = self._side_depth(
                market, "ask" if side == "bid" else "bid", account_id, funds=side == "bid"
            )
            need = p if side == "bid" else v
            assert need is not None
            if depth < need:
                raise upbit_error(err, "주문량이 호가 잔량을 초과합니다.")
        if side == "bid":
            reserved_fee = total * fee_rate
            lock = total + reserved_fee
            kb = acc.bal(quote)
            if kb.balance < lock:
                raise upbit_error("insufficient_funds_bid")
        else:
            assert v is not None
            reserved_fee = ZERO
            lock = v
            bb = acc.bal(base)
            if bb.balance < lock:
                raise upbit_error("insufficient_funds_ask")

        ts = self.clock()
        order = Order(
            uuid=str(uuid_mod.uuid4()),
            account_id=account_id,
            market=market,
            side=side,
            ord_type=ord_type,
            price=p,
            volume=v,
            created_ms=ts,
            seq=next(self._seq),
            time_in_force=time_in_force,
            identifier=identifier,
            smp_type=smp_type,
            remaining_volume=v,
            reserved_fee=reserved_fee,
            remaining_fee=reserved_fee,
            locked=lock,
        )
        if dry_run:
            return order
        held = acc.bal(quote if side == "bid" else base)
        held.balance -= lock
        held.locked += lock
        self.orders[order.uuid] = order
        acc.order_uuids.append(order.uuid)
        if identifier is not None:
            acc.identifiers[identifier] = order.uuid
        self._emit(OrderEvent(account_id, order, "wait", None, ts))
        self._emit_assets(account_id, quote if side == "bid" else base)

        # post_only: any crossing part cancels the whole order without trading (§8).
        if time_in_force == "post_only" and self._crosses(order):
            self._close(order, "cancel", ts)
            return order
        if time_in_force == "fok" and self._fillable(order) < (
            order.volume if order.volume is not None else p or ZERO
        ):
            self._close(order, "cancel", ts)
            return order
        self._take(order, ts)
        if order.state == "wait":
            if ord_type != "limit" or time_in_force in ("ioc", "fok"):
                # Market orders end done when exactly filled, else cancel (dust returned) (§6.3).
                self._close(order, "done" if self._filled(order) else "cancel", ts)
            elif self._filled(order):
                self._close(order, "done", ts)
            else:
                self._rest(order)
        return order

    # ---------------------------------------------------------------------------------------------- cancel

    def order_cancel(
        self, *, account_id: str, uuid: str | None = None, identifier: str | None = None
    ) -> dict[str, Any]:
        """Cancel an open order; returns the order object as accepted for cancellation (state ``wait``)."""
        order = self.order_get(account_id=account_id, uuid=uuid, identifier=identifier)
        if not order.is_open:
            raise upbit_error("order_not_cancelable" if order.state == "done" else "order_not_found")
        snapshot = order.wire()
        self._unrest(order)
        self._close(order, "cancel", self.clock())
        return snapshot

    def order_cancel_and_new(
        self,
        *,
        account_id: str,
        prev_uuid: str | None = None,
        prev_identifier: str | None = None,
        new_ord_type: str | None,
        new_volume: Any = None,
        new_price: Any = None,
        new_identifier: str | None = None,
        new_time_in_force: str | None = None,
        new_smp_type: str | None = None,
    ) -> dict[str, Any]:
        """Cancel an open order and place a new one on the same market and side (``POST
        /v1/orders/cancel_and_new``). ``new_volume="remain_only"`` reuses the old remaining volume. The
        new order is checked before the old one is cancelled, as far as it can be without the old lock."""
        if not new_ord_type:
            raise upbit_error("validation_error", "new_ord_type is missing")
        old = self.order_get(account_id=account_id, uuid=prev_uuid, identifier=prev_identifier)
        if not old.is_open:
            raise upbit_error("order_not_cancelable")
        volume = old.remaining_volume if new_volume == "remain_only" else new_volume
        if new_identifier is not None and new_identifier in self._account(account_id).identifiers:
            raise upbit_error("duplicate_identifier")
        snapshot = self.order_cancel(account_id=account_id, uuid=old.uuid)
        new = self.order_create(
            account_id=account_id,
            market=old.market,
            side=old.side,
            ord_type=new_ord_type,
            price=new_price,
            volume=volume,
            time_in_force=new_time_in_force,
            identifier=new_identifier,
            smp_type=new_smp_type,
        )
        snapshot["new_order_uuid"] = new.uuid
        snapshot["new_order_identifier"] = new.identifier
        return snapshot

    # ---------------------------------------------------------------------------------------------- internals

    def _filled(self, order: Order) -> bool:
        if order.ord_type in ("price",) or (order.ord_type == "best" and order.side == "bid"):
            assert order.price is not None
            return order.executed_funds >= order.price
        return order.remaining_volume is not None and order.remaining_volume <= 0

    def _close(self, order: Order, state: str, ts: int) -> None:
        """Finish an order: release whatever is still locked back to the balance."""
        acc = self.accounts[order.account_id]
        quote, base = order.market.split("-", 1)
        held = acc.bal(quote if order.side == "bid" else base)
        held.locked -= order.locked
        held.balance += order.locked
        order.locked = ZERO
        order.remaining_fee = ZERO
        order.state = state
        order.done_ms = ts
        self._emit(OrderEvent(order.account_id, order, state, None, ts))
        self._emit_assets(order.account_id, quote if order.side == "bid" else base)

    def _key(self, order: Order) -> tuple[Decimal, int]:
        assert order.price is not None
        return (-order.price if order.side == "bid" else order.price, order.seq)

    def _rest(self, order: Order) -> None:
        lst = self._resting[order.market][order.side]
        bisect.insort(lst, (self._key(order), order), key=lambda x: x[0])
        order.queue_ahead = self._source_size_at(order.market, order.side, float(order.price or 0))

    def _unrest(self, order: Order) -> None:
        lst = self._resting[order.market][order.side]
        for i, (_, o) in enumerate(lst):
            if o is order:
                del lst[i]
                return

    def _source_size_at(self, market: str, side: str, price: float) -> float:
        book = self._books[market]
        for p, s in book.asks if side == "ask" else book.bids:
            if p == price:
                return max(0.0, s - book.consumed.get((side, p), 0.0))
        return 0.0

    def _best_price(self, market: str, side: str, account_id: str | None = None) -> Decimal | None:
        for price, _src, _users in self._levels(market, side):
            return price
        return None

    def _side_depth(self, market: str, side: str, account_id: str, *, funds: bool) -> Decimal:
        total = ZERO
        for price, src, users in self._levels(market, side):
            vol = src + sum((o.remaining_volume or ZERO) for o in users)
            total += price * vol if funds else vol
        return total

    def _levels(self, market: str, side: str) -> Iterator[tuple[Decimal, Decimal, list[Order]]]:
        """Opposite-side liquidity best-first: (price, source volume left, resting user orders by seq)."""
        book = self._books[market]
        src_levels = book.asks if side == "ask" else book.bids
        src: dict[float, float] = {}
        for p, s in src_levels:
            if p > 0 and s > 0:
                left = round(s - book.consumed.get((side, p), 0.0), 8)
                if left > 0:
                    src[p] = round(src.get(p, 0.0) + left, 8)
        users: dict[Decimal, list[Order]] = {}
        for _, o in self._resting[market][side]:
            assert o.price is not None
            users.setdefault(o.price, []).append(o)
        prices: dict[Decimal, float] = {_dec(p): s for p, s in src.items()}
        keys = set(prices) | set(users)
        for price in sorted(keys, reverse=(side == "bid")):
            yield price, _qvol(_dec(prices.get(price, 0.0))), users.get(price, [])

    def _crosses(self, order: Order) -> bool:
        opp = "ask" if order.side == "bid" else "bid"
        best = self._best_price(order.market, opp)
        if best is None or order.price is None:
            return False
        return best <= order.price if order.side == "bid" else best >= order.price

    def _limit_ok(self, order: Order, price: Decimal) -> bool:
        if order.ord_type != "limit":
            return True
        assert order.price is not None
        return price <= order.price if order.side == "bid" else price >= order.price

    def _fillable(self, order: Order) -> Decimal:
        """How much (volume, or KRW for buys by total) could fill right now (for fok)."""
        opp = "ask" if order.side == "bid" else "bid"
        by_funds = order.volume is None
        got = ZERO
        for price, src, users in self._levels(order.market, opp):
            if not self._limit_ok(order, price):
                break
            vol = src + sum((o.remaining_volume or ZERO) for o in users)
            got += price * vol if by_funds else vol
        return got

    def _take(self, order: Order, ts: int) -> None:
        """Match an incoming order against the opposite side as taker."""
        opp = "ask" if order.side == "bid" else "bid"
        by_funds = order.volume is None  # market buy by KRW total
        levels = list(self._levels(order.market, opp))
        for price, src, users in levels:
            if not self._limit_ok(order, price):
                break
            for maker in [None, *users]:
                if by_funds:
                    assert order.price is not None
                    want = _qvol((order.price - order.executed_funds) / price)
                else:
                    want = order.remaining_volume or ZERO
                if want <= 0:
                    return
                avail = src if maker is None else (maker.remaining_volume or ZERO)
                qty = min(want, avail)
                if qty <= 0:
                    continue
                if maker is not None and maker.account_id == order.account_id:
                    mode = order.smp_type or maker.smp_type  # the taker's mode wins (§8)
                    if mode == "cancel_maker":
                        self._prevent(maker, maker.remaining_volume or ZERO, ts)
                        continue
                    if mode == "cancel_taker" or (mode == "reduce" and by_funds):
                        self._prevent(order, want if not by_funds else ZERO, ts, close=True)
                        return
                    if mode == "reduce":
                        self._prevent(maker, qty, ts)
                        self._prevent(order, qty, ts)
                        if order.state != "wait":
                            return
                        continue
                if maker is None:
                    src -= qty
                    book = self._books[order.market]
                    key = (opp, float(price))
                    book.consumed[key] = book.consumed.get(key, 0.0) + float(qty)
                    if self.liquidity_taken is not None:
                        self.liquidity_taken(order.market, opp, float(price), float(qty))
                else:
                    self._fill(maker, price, qty, True, ts)
                    if self._filled(maker):
                        self._unrest(maker)
                        self._close(maker, "done", ts)
                self._fill(order, price, qty, False, ts)
                self._emit(
                    Execution(
                        order.market, float(price), float(qty), "BID" if order.side == "bid" else "ASK", ts
                    )
                )

    def _prevent(self, order: Order, qty: Decimal, ts: int, *, close: bool = False) -> None:
        """Self-match prevention: take ``qty`` off ``order`` without trading and release what it held;
        the order is cancelled when nothing is left (or ``close``)."""
        acc = self.accounts[order.account_id]
        quote, base = order.market.split("-", 1)
        if order.side == "bid" and order.ord_type == "limit" and qty > 0:
            assert order.price is not None
            release = min(order.locked, order.price * qty * (1 + self.fee_rate))
            order.remaining_fee = max(ZERO, order.remaining_fee - order.price * qty * self.fee_rate)
            held = acc.bal(quote)
        elif order.side == "ask":
            release = min(order.locked, qty)
            held = acc.bal(base)
        else:  # a buy by KRW total: everything still held
            release = order.locked
            held = acc.bal(quote)
        order.locked -= release
        held.locked -= release
        held.balance += release
        order.prevented_locked += release
        order.prevented_volume += qty
        if order.remaining_volume is not None:
            order.remaining_volume -= qty
        self._emit(OrderEvent(order.account_id, order, "prevented", None, ts))
        if close or (order.remaining_volume is not None and order.remaining_volume <= 0):
            self._unrest(order)
            self._close(order, "cancel", ts)

    def _fill(self, order: Order, price: Decimal, qty: Decimal, is_maker: bool, ts: int) -> None:
        acc = self.accounts[order.account_id]
        quote, base = order.market.split("-", 1)
        funds = price * qty
        fee = funds * self.fee_rate
        last = self._last_price.get(order.market)
        trend = "up" if last is None or price >= last else "down"
        self._last_price[order.market] = price
        kb, bb = acc.bal(quote), acc.bal(base)
        if order.side == "bid":
            # Release what this volume held (at the order's own price for limits, so a better fill price
            # refunds the difference), then pay funds + fee out of it.
            if order.ord_type == "limit":
                assert order.price is not None
                fee_part = order.price * qty * self.fee_rate
                release = order.price * qty + fee_part
            else:
                fee_part = fee
                release = funds + fee
            release = min(release, order.locked)
            order.locked -= release
            kb.locked -= release
            kb.balance += release - funds - fee
            order.remaining_fee = max(ZERO, order.remaining_fee - fee_part)
            held_before = bb.total
            bb.avg_buy_price = ((bb.avg_buy_price * held_before + funds) / (held_before + qty)).quantize(
                VOLUME_QUANTUM
            )
            bb.balance += qty
        else:
            order.locked -= qty
            bb.locked -= qty
            kb.balance += funds - fee
            if bb.total <= 0:
                bb.avg_buy_price = ZERO
        order.paid_fee += fee
        order.executed_volume += qty
        order.executed_funds += funds
        if order.remaining_volume is not None:
            order.remaining_volume -= qty
        f = Fill(
            uuid=str(uuid_mod.uuid4()),
            market=order.market,
            side=order.side,
            price=price,
            volume=qty,
            funds=funds,
            fee=fee,
            trend=trend,
            is_maker=is_maker,
            ts=ts,
        )
        order.trades.append(f)
        self._emit(OrderEvent(order.account_id, order, "trade", f, ts))
        self._emit_assets(order.account_id, quote, base)

    # ---------------------------------------------------------------------------------------------- market in

    def on_book(self, market: str, asks: Sequence[Level], bids: Sequence[Level], ts: int) -> None:
        """A new full book from the market source (best first). Resting user orders the book has moved
        across fill as makers at their own price; queue estimates shrink with the level."""
        book = self._books[market]
        book.asks, book.bids, book.ts = asks, bids, ts
        book.consumed = {}
        resting = self._resting[market]
        if not resting["bid"] and not resting["ask"]:
            return
        for side, opp_levels in (("bid", asks), ("ask", bids)):
            for _, o in list(resting[side]):
                assert o.price is not None
                pf = float(o.price)
                o.queue_ahead = min(o.queue_ahead, self._source_size_at(market, side, pf))
                avail = 0.0
                for p, s in opp_levels:
                    if p <= 0 or s <= 0:
                        continue
                    if (side == "bid" and p <= pf) or (side == "ask" and p >= pf):
                        avail += s
                    else:
                        break
                if avail > 0:
                    self._maker_fill(o, avail, opp_levels, ts)

    def _maker_fill(self, o: Order, avail: float, opp_levels: Sequence[Level], ts: int) -> None:
        assert o.price is not None and o.remaining_volume is not None
        qty = min(o.remaining_volume, _qvol(_dec(round(avail, 8))))
        if qty <= 0:
            return
        # The crossing liquidity is used up by this order (so a second order cannot fill against it too).
        book = self._books[o.market]
        opp = "ask" if o.side == "bid" else "bid"
        left = float(qty)
        for p, s in opp_levels:
            if left <= 0:
                break
            take = min(s - book.consumed.get((opp, p), 0.0), left)
            if take > 0:
                book.consumed[(opp, p)] = book.consumed.get((opp, p), 0.0) + take
                left -= take
        self._fill(o, o.price, qty, True, ts)
        if self._filled(o):
            self._unrest(o)
            self._close(o, "done", ts)

    def on_trade(self, market: str, price: float, volume: float, ask_bid: str, ts: int) -> None:
        """A public trade from the market source. Resting user orders it traded through fill at their
        price; a trade at their price first eats the queue ahead of them."""
        self._last_price[market] = _dec(price)
        side = "bid" if ask_bid == "ASK" else "ask"  # a seller-initiated trade hits bids
        resting = self._resting[market][side]
        if not resting:
            return
        left = _qvol(_dec(volume))
        for _, o in list(resting):
            assert o.price is not None and o.remaining_volume is not None
            pf = float(o.price)
            through = price < pf if side == "bid" else price > pf
            at = price == pf
            if not (through or at):
                break
            if through:
                qty = o.remaining_volume
            else:
                ahead = _qvol(_dec(o.queue_ahead))
                eat = min(ahead, left)
                o.queue_ahead = float(ahead - eat)
                left -= eat
                if left <= 0:
                    break
                qty = min(o.remaining_volume, left)
                left -= qty
            if qty > 0:
                self._fill(o, o.price, qty, True, ts)
                if self._filled(o):
                    self._unrest(o)
                    self._close(o, "done", ts)
