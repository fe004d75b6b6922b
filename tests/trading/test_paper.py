"""Paper exchange: fills against a known book (hand-computed volumes, prices, fees), resting limit orders
filled by the market trading through them, balances and positions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.trading.conftest import d
from trading import selectors, services
from trading.models import Order, PaperBalance, PaperOrder, PaperTrade, Position

pytestmark = pytest.mark.django_db


def krw(user) -> PaperBalance:
    return PaperBalance.objects.get(user=user, currency="KRW")


def coin(user, c="BTC") -> PaperBalance:
    return PaperBalance.objects.get(user=user, currency=c)


def test_new_account_starts_in_paper_mode_with_starting_krw(user, sim, settings):
    settings.PAPER_STARTING_KRW = "10000000"
    assert selectors.profile_get(user=user).mode == "paper"
    balances = selectors.balances_get(user=user)
    assert [(b.currency, b.balance, b.locked) for b in balances] == [("KRW", d(10_000_000), d(0))]


def test_market_buy_walks_the_ask_levels_with_fees(user, sim):
    order = services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(150_000))
    # Level 1: 0.001 @ 100,000,000 = 100,000 KRW; level 2: floor8(50,000 / 100,001,000) = 0.00049999.
    fills = list(order.fills.order_by("price"))
    assert [(f.price, f.volume, f.funds, f.fee) for f in fills] == [
        (d(100_000_000), d("0.001"), d(100_000), d(50)),
        (d(100_001_000), d("0.00049999"), d("49999.49999"), d("24.99975000")),
    ]
    assert order.state == "done"  # the 0.50001 KRW dust left over does not make it "cancelled"
    assert order.executed_volume == d("0.00149999")
    assert order.executed_funds == d("149999.49999")
    assert order.paid_fee == d("74.99975")
    assert krw(user).balance == d(10_000_000) - d("149999.49999") - d("74.99975")
    assert krw(user).locked == 0
    assert coin(user).balance == d("0.00149999")
    assert coin(user).avg_buy_price == (d("149999.49999") / d("0.00149999")).quantize(Decimal("0.0001"))
    pos = Position.objects.get(user=user, mode="paper", currency="BTC")
    assert pos.volume == d("0.00149999")  # cost basis includes the buy fee
    assert pos.avg_buy_price == ((d("149999.49999") + d("74.99975")) / d("0.00149999")).quantize(d("0.0001"))


def test_market_sell_walks_the_bid_levels_and_realizes_pnl(user, sim):
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    # Bought 0.001 at 100,000,000 for 100,000 + 50 fee; now give the account 0.001 more (two levels to sell).
    PaperBalance.objects.filter(user=user, currency="BTC").update(balance=d("0.002"))
    before = krw(user).balance
    order = services.order_place(
        user=user, market="KRW-BTC", side="ask", ord_type="market", volume=d("0.002")
    )
    fills = list(order.fills.order_by("-price"))
    assert [(f.price, f.volume, f.fee) for f in fills] == [
        (d(99_999_000), d("0.001"), d("49.9995")),
        (d(99_998_000), d("0.001"), d("49.999")),
    ]
    assert order.state == "done"
    assert krw(user).balance - before == d(199_997) - d("99.9985")
    assert coin(user).balance == 0 and coin(user).locked == 0
    # Realized against the fee-inclusive basis of 100,050 KRW per 0.001 BTC our own fills bought; the
    # 0.001 BTC that came from elsewhere is valued at the account's average buy price (100,000,000).
    first, second = fills
    assert first.realized_pnl == d(99_999) - d("49.9995") - d(100_050)
    assert second.realized_pnl == d(99_998) - d("49.999") - d(100_000)
    assert (
        Position.objects.get(user=user, currency="BTC").realized_pnl
        == first.realized_pnl + second.realized_pnl
    )


def test_limit_buy_takes_what_crosses_then_rests_and_fills_as_the_market_trades_through(user, sim):
    order = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(100_001_000), volume=d("0.005")
    )
    assert order.state == "open"
    assert order.executed_volume == d("0.003")  # 0.001 @ 100,000,000 + 0.002 @ 100,001,000 (taker)
    assert order.paid_fee == d(50) + d("100.001")
    # What is still locked: the rest at the limit price plus its fee.
    assert krw(user).locked == d(200_002) + d("100.001")
    assert krw(user).balance == d(10_000_000) - d(300_002) - d("150.001") - krw(user).locked

    sim.trade("KRW-BTC", 100_001_000.0, 0.0015, "ASK")  # a seller hits our price: partial fill
    from trading.services.paper import paper_orders_match

    paper_orders_match()
    order.refresh_from_db()
    assert order.state == "open" and order.executed_volume == d("0.0045")
    maker = order.fills.order_by("-executed_at", "-id").first()
    assert (maker.price, maker.volume, maker.fee) == (d(100_001_000), d("0.0015"), d("75.00075"))

    sim.trade("KRW-BTC", 100_000_000.0, 0.01, "ASK")  # trades through: the last 0.0005 fills
    paper_orders_match()
    order.refresh_from_db()
    assert order.state == "done" and order.executed_volume == d("0.005")
    assert krw(user).locked == 0
    assert coin(user).balance == d("0.005")
    total_cost = sum(f.funds + f.fee for f in order.fills.all())
    assert krw(user).balance == d(10_000_000) - total_cost
    # Each public trade is counted once: matching again changes nothing.
    assert paper_orders_match() == 0


def test_cancel_resting_paper_order_returns_locked_funds(user, sim):
    order = services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    assert order.state == "open" and krw(user).locked == d(90_000) + d(45)
    cancelled = services.order_cancel(user=user, order_id=order.pk)
    assert cancelled.state == "cancelled"
    assert krw(user).locked == 0 and krw(user).balance == d(10_000_000)
    assert PaperOrder.objects.get(identifier=order.idempotency_key).state == "cancel"


def test_portfolio_values_holdings_and_pnl_today(user, sim):
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    p = selectors.portfolio_get(user=user)
    assert p.mode == "paper"
    [h] = p.holdings
    assert (h.currency, h.volume, h.avg_buy_price) == ("BTC", d("0.001"), d(100_000_000))
    # Last price: the simulator's last trade; no trade yet -> its ticker falls back to the book.
    assert h.price is not None
    assert p.total_assets_krw == p.krw_balance + p.krw_locked + h.value_krw
    # Bought today: P&L today = value now - what was paid (incl. fee).
    assert p.pnl_today == (h.value_krw - d(100_000) - d(50)).quantize(d("0.00000001"))


def test_paper_fill_ledger_matches_orders(user, sim):
    services.order_place(user=user, market="KRW-ETH", side="bid", ord_type="price", price=d(600_000))
    assert (
        PaperTrade.objects.filter(order__user=user).count() == Order.objects.get(user=user).fills.count() == 2
    )


def _agree(p: selectors.Portfolio, starting: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    # Cost bases are averages kept to 4 decimal places: agreement is to well under one won.
    cent = Decimal("0.01")
    return (
        (p.total_assets_krw - starting).quantize(cent),
        p.pnl_today.quantize(cent),
        p.pnl_total.quantize(cent),
    )


def test_total_pnl_today_and_pnl_total_agree_right_after_the_first_paper_buy(user, sim, api):
    starting = d(10_000_000)
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(100_000))
    p = selectors.portfolio_get(user=user)
    change, today, total = _agree(p, starting)
    assert change == today == total, (change, today, total)
    assert change <= d(-50)  # at least the 50 KRW fee is gone, and every figure says so
    body = api.get("/api/trading/portfolio/").json()["portfolio"]
    assert Decimal(body["pnl_total"]).quantize(Decimal("0.01")) == total
    assert Decimal(body["pnl_today"]).quantize(Decimal("0.01")) == today
    [h] = p.holdings
    assert h.cost_krw == d(100_050)  # the cost the unrealized P&L is measured from includes the fee


def test_the_three_figures_still_agree_after_more_buys_and_a_partial_sell(user, sim):
    for market, krw_amount in (("KRW-BTC", 100_000), ("KRW-ETH", 600_000), ("KRW-BTC", 30_000)):
        services.order_place(user=user, market=market, side="bid", ord_type="price", price=d(krw_amount))
    services.order_place(user=user, market="KRW-BTC", side="ask", ord_type="market", volume=d("0.0005"))
    p = selectors.portfolio_get(user=user)
    assert p.realized_pnl != 0
    change, today, total = _agree(p, d(10_000_000))
    assert change == today == total, (change, today, total)
