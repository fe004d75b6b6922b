"""When auto-trading leaves a position: the one exit rule that the product (``autotrade.rule.decide``)
trades with and the backtest (``mlmodel.backtest.run_backtest``) simulates, so the gate judges the rule the
product runs. Pure: works on ``Decimal`` (the product) and ``float`` (the backtest) alike."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

SIGNAL_SELL = "signal_sell"
HORIZON_EXIT = "horizon_exit"

N = TypeVar("N", float, Decimal)


def exit_reason(*, predicted_return: N, edge: N, held_s: float | None, horizon_s: float | None) -> str | None:
    """Why a held lot is sold now, or None to keep it.

    - ``signal_sell``: the model predicts a fall beyond the edge (threshold + round-trip cost);
    - ``horizon_exit``: the horizon the buy was predicted over has passed since the lot was bought
      (``held_s >= horizon_s``) and the model would not buy it now (prediction <= edge): the move the lot
      was bought for is over, and nothing predicted pays for holding on.

    ``edge`` is the same threshold + cost the buy side uses. Without a horizon (or a known holding time)
    only ``signal_sell`` applies."""
    if predicted_return < -edge:
        return SIGNAL_SELL
    held_long_enough = horizon_s is not None and held_s is not None and 0 < horizon_s <= held_s
    if held_long_enough and not predicted_return > edge:
        return HORIZON_EXIT
    return None
