"""The order service's pre-check and the simulator's engine give the same answer for the same order: both
ask market.upbit.rules (the paper exchange too), so a rule cannot drift between them."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from core.errors import ApplicationError
from market.upbit.protocol import UpbitError
from market.upbit_sim.engine import MatchingEngine
from trading import errors
from trading.services.orders import order_request_validate

CASES = [
    ("bid", "limit", "100001", "0.1"),  # off the tick grid
    ("ask", "limit", "100000", "0.123456789"),  # 9 decimals
    ("bid", "limit", "1000", "4.999"),  # under 5,000 KRW
    ("bid", "price", "4999", None),
    ("bid", "price", "1000000001", None),  # over the buy maximum
    ("bid", "limit", "100000", "0.1"),  # fine
    ("ask", "limit", "100000000", "11"),  # a sale above 1e9 KRW: no maximum on the sell side (§7.3)
]


def _engine_error(side: str, ord_type: str, price: str | None, volume: str | None) -> type | None:
    eng = MatchingEngine(["KRW-BTC"])
    acct = eng.account_create(krw=D("10000000000"), assets={"BTC": "100"})
    try:
        eng.order_create(
            account_id=acct.account_id, market="KRW-BTC", side=side, ord_type=ord_type,
            price=price, volume=volume, dry_run=True,
        )  # fmt: skip
    except UpbitError as exc:
        if exc.name == "validation_error":  # the engine's parse step names a 9-decimal volume so
            return errors.InvalidVolume
        return type(errors.from_upbit(exc))
    return None


def _service_error(side: str, ord_type: str, price: str | None, volume: str | None) -> type | None:
    try:
        order_request_validate(
            market="KRW-BTC", side=side, ord_type=ord_type,
            price=D(price) if price else None, volume=D(volume) if volume else None,
        )  # fmt: skip
    except ApplicationError as exc:
        return type(exc)
    return None


@pytest.mark.parametrize("case", CASES)
def test_service_and_engine_agree(case: Any, settings: Any) -> None:
    settings.UPBIT_MIN_ORDER_KRW = 5000
    assert _service_error(*case) == _engine_error(*case)
