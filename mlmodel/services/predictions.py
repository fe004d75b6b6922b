"""Serving side: the predictions the ml worker made, stored for the pages and pruned after a while."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from mlmodel import conf
from mlmodel.models import Prediction


def predictions_store(*, rows: Sequence[dict[str, Any]]) -> list[Prediction]:
    objs = [
        Prediction(
            market=r["market"],
            ts=dt.datetime.fromtimestamp(int(r["ts"]) / 1000, tz=dt.UTC),
            horizon_s=float(r["horizon_s"]),
            predicted_return=float(r["predicted_return"]),
            mid=r.get("mid"),
            best_bid=r.get("best_bid"),
            best_ask=r.get("best_ask"),
            model_version_id=r.get("model_version_id"),
        )
        for r in rows
    ]
    return Prediction.objects.bulk_create(objs)


def predictions_prune(*, keep_seconds: float | None = None) -> int:
    keep = float(keep_seconds if keep_seconds is not None else conf.get("ML_PREDICTION_KEEP_S"))
    cutoff = timezone.now() - dt.timedelta(seconds=keep)
    deleted, _by_model = Prediction.objects.filter(created_at__lt=cutoff).delete()
    return int(deleted)
