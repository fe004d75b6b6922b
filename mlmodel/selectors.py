"""ML reads: the active model per market, model summaries, training progress, the latest prediction."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from mlmodel.models import ModelStatus, ModelVersion, Prediction, TrainingRun


def model_active(*, market: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).first()


def model_active_map(*, markets: list[str]) -> dict[str, ModelVersion]:
    rows = ModelVersion.objects.filter(market__in=markets, status=ModelStatus.ACTIVE).only(
        "id", "market", "version", "name", "artifact", "artifact_sha256", "horizon_s"
    )
    return {v.market: v for v in rows}


def model_versions_list(*, market: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.all()
    if market:
        qs = qs.filter(market=market)
    return qs.order_by("market", "-version")


def _num(d: dict[str, Any], *path: str) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def model_summary(*, version: ModelVersion, staff: bool = False) -> dict[str, Any]:
    """What a user (or, with more detail, staff) is shown about a model version."""
    m = version.metrics or {}
    base = (m.get("baselines") or {}).get("persistence") or {}
    out: dict[str, Any] = {
        "id": version.pk,
        "market": version.market,
        "name": version.name,
        "version": version.version,
        "status": version.status,
        "horizon_s": version.horizon_s,
        "promoted_at": version.promoted_at,
        "created_at": version.created_at,
        "data_start": version.data_start,
        "data_end": version.data_end,
        "feature_version": version.feature_version,
        "metrics": {
            "val_mse": _num(m, "lstm", "val", "mse"),
            "persistence_val_mse": _num(base, "val", "mse"),
            "test_dir_acc": _num(m, "lstm", "test", "dir_acc"),
            "test_corr": _num(m, "lstm", "test", "corr"),
            "test_f1_moves": _num(m, "lstm", "test", "f1_moves"),
            "backtest_net_pnl": _num(m, "lstm", "backtest", "net_pnl"),
            "backtest_buy_hold_pnl": _num(m, "lstm", "backtest", "buy_hold_pnl"),
            "backtest_round_trips": _num(m, "lstm", "backtest", "n_round_trips"),
            "beats_persistence_on_validation": _num(m, "lstm", "beats_persistence_on_validation"),
        },
        "verdict": (version.report or {}).get("verdict", ""),
    }
    if staff:
        out["code_version"] = version.code_version
        out["hyperparameters"] = version.hyperparameters
        out["data_days"] = version.data_days
        out["status_note"] = version.status_note
    return out


def training_run_progress(*, run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "market": run.market,
        "state": run.state,
        "stage": run.stage,
        "epoch": run.epoch,
        "total_epochs": run.total_epochs,
        "split": run.split,
        "total_splits": run.total_splits,
        "train_loss": run.train_loss,
        "val_loss": run.val_loss,
        "eta_seconds": run.eta_seconds,
        "message": run.message,
        "decision": run.decision,
        "result_version_id": run.result_version_id,
        "process_id": run.process_id,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "finished": run.is_finished,
    }


def prediction_latest(*, market: str) -> Prediction | None:
    return (
        Prediction.objects.filter(market=market)
        .select_related("model_version")
        .order_by("-ts", "-id")
        .first()
    )


def predictions_recent(*, market: str, limit: int = 300) -> list[Prediction]:
    return list(Prediction.objects.filter(market=market).order_by("-ts", "-id")[:limit])
