"""A paper order is one transaction (trading/services/orders.py ``_paper_order_place``): all of it is kept or
none of it; the idempotency key holds without a look-up per order (a retry gets the same order even when a
fresh check would now refuse it); concurrent orders of one user never overdraw (the funds are checked on the
locked rows: run on MariaDB in CI, where the rows really are locked, and on SQLite, where writers queue)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from tests.accounts.factories import UserFactory
from tests.trading.conftest import d
from trading import errors, services
from trading.models import Fill, Order, PaperBalance, PaperOrder, PaperTrade, Position

pytestmark = pytest.mark.django_db


def _buy(user: Any, krw: int = 150_000, key: str | None = None) -> Order:
    return services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(krw), idempotency_key=key
    )


def _krw(user: Any) -> PaperBalance:
    return PaperBalance.objects.get(user=user, currency="KRW")


def test_a_failure_after_the_paper_fill_keeps_nothing(user, sim, monkeypatch):
    _buy(user, 10_000)  # the account exists, with one order
    before = (
        _krw(user).balance,
        Order.objects.count(),
        PaperOrder.objects.count(),
        PaperTrade.objects.count(),
    )

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Fill.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        _buy(user, 20_000, key="half")
    # Not the paper exchange's order, fills or balance change, nor our Order: no half-written order.
    after = (
        _krw(user).balance,
        Order.objects.count(),
        PaperOrder.objects.count(),
        PaperTrade.objects.count(),
    )
    assert after == before
    assert not Order.objects.filter(idempotency_key="half").exists()


def test_a_retry_of_a_placed_order_returns_it_even_when_a_new_order_would_be_refused(user, sim, settings):
    settings.PAPER_STARTING_KRW = "200000"
    first = _buy(user, 150_000, key="spend-it")
    assert first.state == "done"
    # The account cannot pay for it again, and then trading stops: the retry is still the same order.
    assert _buy(user, 150_000, key="spend-it").pk == first.pk
    services.kill_switch_engage(reason="test")
    assert _buy(user, 150_000, key="spend-it").pk == first.pk
    assert Order.objects.filter(user=user).count() == 1 and PaperOrder.objects.count() == 1
    with pytest.raises(errors.IdempotencyConflict):  # the same key for another order: 409
        _buy(user, 10_000, key="spend-it")


def test_an_order_the_paper_exchange_refuses_is_recorded_and_its_retry_refused_alike(user, sim):
    # 9,000,000 KRW (the account has 10,000,000) is more than every offer on the scripted book (~1.3 M KRW).
    with pytest.raises(errors.InvalidOrder) as first:
        services.order_place(
            user=user,
            market="KRW-BTC",
            side="bid",
            ord_type="price",
            price=d(9_000_000),
            idempotency_key="big",
        )
    assert "offers on the order book" in str(first.value.message)
    order = Order.objects.get(user=user, idempotency_key="big")
    assert order.state == "rejected" and order.error_code == "invalid_order"
    assert not PaperOrder.objects.exists() and not PaperBalance.objects.filter(locked__gt=0).exists()
    with pytest.raises(errors.InvalidOrder):
        services.order_place(
            user=user,
            market="KRW-BTC",
            side="bid",
            ord_type="price",
            price=d(9_000_000),
            idempotency_key="big",
        )
    assert Order.objects.filter(user=user).count() == 1


def test_insufficient_funds_under_the_lock_says_what_is_needed_and_keeps_no_row(user, sim, settings):
    settings.PAPER_STARTING_KRW = "100000"
    with pytest.raises(errors.InsufficientFunds) as exc:
        _buy(user, 100_000)
    assert "100,050 KRW" in str(exc.value.message) and "100,000 KRW is available" in str(exc.value.message)
    assert not Order.objects.exists() and not PaperOrder.objects.exists()


def test_the_response_is_exactly_what_the_order_serializer_renders(user, sim):
    from trading.api.views import _order_out, s  # the views first: DRF's settings import core.api

    order = _buy(user, 150_000)
    fresh = Order.objects.get(pk=order.pk)
    assert _order_out(order) == s.OrderOutput(fresh).data  # the fills just made, without a re-read
    assert len(_order_out(order)["fills"]) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_of_one_user_never_overdraw(sim, settings):
    """12 buys of 100,000 KRW at once from one account that can pay for exactly 5 (fees included)."""
    settings.PAPER_STARTING_KRW = str(5 * 100_050)
    user = UserFactory()
    _buy(user, 10_000)  # open the account, then give it exactly five orders' worth
    PaperBalance.objects.filter(user=user, currency="KRW").update(balance=d(5 * 100_050))
    start = threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            start.wait()
            try:
                _buy(user, 100_000, key=f"c{i}")
                result = "placed"
            except errors.InsufficientFunds:
                result = "refused"
            except Exception as exc:  # noqa: BLE001 - reported in the assertion
                result = f"error {type(exc).__name__}: {exc}"
            with lock:
                outcomes.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["placed"] * 5 + ["refused"] * 7, outcomes
    krw = _krw(user)
    assert krw.balance == 0 and krw.locked == 0
    spent = sum((t.funds + t.fee for t in PaperTrade.objects.filter(order__user=user)), Decimal(0))
    assert spent == d(10_005) + 5 * d(100_050)
    assert Order.objects.filter(user=user, state="done").count() == 6
    assert (
        Fill.objects.filter(order__user=user).count() == PaperTrade.objects.filter(order__user=user).count()
    )
    pos = Position.objects.get(user=user, mode="paper", currency="BTC")
    assert pos.volume == PaperBalance.objects.get(user=user, currency="BTC").balance
