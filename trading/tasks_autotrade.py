"""Auto-trading task: the ML worker enqueues it by name on the default queue for every new prediction."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(
    name="trading.tasks.autotrade_on_prediction", ignore_result=True, soft_time_limit=30, time_limit=40
)
def autotrade_on_prediction(*, prediction: dict[str, Any]) -> int:
    """Judge one prediction for every running session of its market (idempotent per session + prediction)."""
    from core.errors import ValidationFailed
    from trading.autotrade import autotrade_on_prediction as evaluate

    try:
        return len(evaluate(prediction=prediction))
    except ValidationFailed:
        return 0  # a malformed message: nothing to trade on
