"""The one exit rule the product trades with and the backtest simulates (mlmodel.rule)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlmodel.rule import exit_reason


@pytest.mark.parametrize("num", [float, Decimal])
def test_exit_reason_on_floats_and_decimals_alike(num: type) -> None:
    edge = num("0.002")

    def why(pred: str, held: float | None, horizon: float | None = 20.0) -> str | None:
        return exit_reason(predicted_return=num(pred), edge=edge, held_s=held, horizon_s=horizon)

    assert why("-0.0021", 0.0) == "signal_sell"  # a predicted fall beyond the edge sells at once
    assert why("-0.002", 5.0) is None  # at -edge, before the horizon: keep
    assert why("0.001", 19.9) is None  # the horizon has not passed
    assert why("0.001", 20.0) == "horizon_exit"
    assert why("0.002", 60.0) == "horizon_exit"  # at the edge: would not buy now
    assert why("0.0021", 60.0) is None  # still a buy: keep the lot
    assert why("0.001", 60.0, None) is None  # no horizon: only the sell signal
    assert why("0.001", None) is None  # holding time unknown
