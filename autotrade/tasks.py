"""Celery tasks of auto-trading: the ML worker's predictions arrive here (settings.MESSAGE_SUBSCRIBERS)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from autotrade.services import autotrade_on_prediction as evaluate
from core.errors import ValidationFailed

TASK_OPTIONS: dict[str, Any] = {"ignore_result": True, "soft_time_limit": 30, "time_limit": 40}


@shared_task(name="autotrade.tasks.autotrade_on_prediction", **TASK_OPTIONS)
def autotrade_on_prediction(*, prediction: dict[str, Any]) -> int:
    """Judge one prediction for every running session of its market (idempotent per session + prediction)."""
    try:
        return len(evaluate(prediction=prediction))
    except ValidationFailed:
        return 0  # a malformed message: nothing to trade on


@shared_task(name="trading.tasks.autotrade_on_prediction", **TASK_OPTIONS)
def autotrade_on_prediction_old_name(*, prediction: dict[str, Any]) -> int:
    """The name the task had inside the trading app: messages queued before the move still run (the same
    judging, so a message queued under both names changes nothing twice). Drop after a release."""
    return autotrade_on_prediction(prediction=prediction)
