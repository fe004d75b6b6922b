"""One table for Upbit's errors: every name gives the same application error whether it arrives as a live
answer (the client parses the HTTP body) or is built from a bare name (the paper exchange, the order
pre-check, the simulator's engine)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from typing import Any

import pytest

from market.upbit import errors as upbit_errors
from market.upbit.protocol import AUTH_ERROR_NAMES, ERRORS, UpbitError
from trading import errors
from trading.exchanges import paper

NAMES: list[str | int] = sorted(set(ERRORS) | set(upbit_errors._BY_NAME) | AUTH_ERROR_NAMES) + [400, 404, 500]
WIRE_STATUS = {"too_many_requests": 429, "thirdparty_agreement_required": 403, "no_authorization_i_p": 401}


def _status(name: str | int) -> int:
    if isinstance(name, int):
        return name
    return ERRORS[name][0] if name in ERRORS else WIRE_STATUS.get(name, 400)


def _answer(exc: Exception) -> tuple[Any, ...]:
    mapped = errors.from_upbit(exc)
    return type(mapped), mapped.code, mapped.status_code, str(mapped.message)


@pytest.mark.parametrize("name", NAMES, ids=str)
def test_live_and_bare_names_give_the_same_trading_error(name: str | int) -> None:
    status = _status(name)
    body = json.dumps({"error": {"name": name, "message": "upbit's text"}}).encode()
    live = upbit_errors.error_from_response(status, body)
    bare = UpbitError(name, None, status if isinstance(name, int) else None)
    assert _answer(bare) == _answer(live)


@pytest.mark.parametrize("name", NAMES, ids=str)
def test_a_bare_name_gets_the_client_s_class(name: str | int) -> None:
    status = _status(name)
    live = upbit_errors.error_from_response(status, json.dumps({"error": {"name": name}}).encode())
    assert type(upbit_errors.upbit_error(name, None, status)) is type(live)
    if isinstance(name, str) and name in ERRORS:  # Upbit's own status when none is given
        assert type(upbit_errors.upbit_error(name)) is type(live)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("over_krw_funds_bid", "InvalidOrder"),
        ("market_offline", "MarketOffline"),
        ("invalid_volume_ask", "InvalidVolume"),
        ("under_min_total_bid", "UnderMinTotal"),
        ("validation_error", "ExchangeRejected"),
    ],
)
def test_the_table_answers_what_the_name_means(name: str, expected: str) -> None:
    body = json.dumps({"error": {"name": name, "message": "m"}}).encode()
    mapped = errors.from_upbit(upbit_errors.error_from_response(_status(name), body))
    assert type(mapped).__name__ == expected
    if name == "over_krw_funds_bid":
        assert "maximum" in str(mapped.message) and "5,000" not in str(mapped.message)


def test_the_paper_exchange_and_the_client_refuse_an_order_above_the_maximum_alike() -> None:
    with pytest.raises(errors.InvalidOrder) as from_paper:
        paper._check_total(D("1000000001"), "bid")
    body = b'{"error":{"name":"over_krw_funds_bid","message":"m"}}'
    from_live = errors.from_upbit(upbit_errors.error_from_response(400, body))
    paper_answer = type(from_paper.value), str(from_paper.value.message)
    assert paper_answer == (type(from_live), str(from_live.message))


def test_the_simulator_engine_raises_the_client_s_class() -> None:
    from market.upbit_sim.engine import MatchingEngine

    eng = MatchingEngine(["KRW-BTC"])
    acct = eng.account_create(krw=D("10000000000"))
    with pytest.raises(upbit_errors.OverMaxTotal):
        eng.order_create(
            account_id=acct.account_id, market="KRW-BTC", side="bid", ord_type="price",
            price="1000000001", dry_run=True,
        )  # fmt: skip
