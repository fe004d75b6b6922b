"""market.upbit.rules: the one order-rule check the engine, the paper exchange and the order service use."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from market.upbit.rules import order_rule_error, order_total, volume_on_grid


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"side": "bid", "ord_type": "limit", "price": D("100000"), "volume": D("0.1")}, None),
        ({"side": "bid", "ord_type": "limit", "price": D("100001"), "volume": D("0.1")}, "invalid_price_bid"),
        ({"side": "ask", "ord_type": "limit", "price": D("100000"), "volume": D("0.123456789")},
         "invalid_volume_ask"),
        ({"side": "bid", "ord_type": "limit", "price": D("1000"), "volume": D("4.999")},
         "under_min_total_bid"),
        ({"side": "bid", "ord_type": "price", "price": D("4999"), "volume": None}, "under_min_total_bid"),
        ({"side": "bid", "ord_type": "price", "price": D("1000000001"), "volume": None},
         "over_krw_funds_bid"),
        # Above the maximum is a buy's rule only (§7.3); a market sell's total needs the book.
        ({"side": "ask", "ord_type": "limit", "price": D("100000000"), "volume": D("11")}, None),
        ({"side": "ask", "ord_type": "market", "price": None, "volume": D("0.00000001")}, None),
        ({"side": "ask", "ord_type": "market", "price": None, "volume": D("1"), "total": D("4000")},
         "under_min_total_ask"),
    ],
)  # fmt: skip
def test_the_first_broken_rule_is_named_as_upbit_names_it(kw: dict, expected: str | None) -> None:
    assert order_rule_error(**kw) == expected


def test_grids_and_totals() -> None:
    assert volume_on_grid(D("0.00000001")) and not volume_on_grid(D("0.000000001"))
    assert order_total(ord_type="limit", price=D("2"), volume=D("3")) == D("6")
    assert order_total(ord_type="market", price=None, volume=D("3")) is None
    broken = order_rule_error(side="bid", ord_type="price", price=D("6000"), volume=None, min_total=D("7000"))
    assert broken == "under_min_total_bid"
