"""ML reads: the active model per market, model summaries, training progress, the latest prediction."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mlmodel import conf
from mlmodel.models import ModelBootstrap, ModelStatus, ModelVersion, Prediction, TrainingRun, TrainingState


def model_active(*, market: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).first()


def model_active_map(*, markets: list[str]) -> dict[str, ModelVersion]:
    rows = ModelVersion.objects.filter(market__in=markets, status=ModelStatus.ACTIVE).only(
        "id", "market", "version", "name", "artifact", "artifact_sha256", "horizon_s"
    )
    return {v.market: v for v in rows}


def model_active_all() -> list[ModelVersion]:
    """Every active version (the ml worker loads them when it starts)."""
    return list(
        ModelVersion.objects.filter(status=ModelStatus.ACTIVE).only(
            "id", "market", "version", "name", "artifact", "artifact_sha256", "horizon_s"
        )
    )


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


def training_run_get(*, run_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(pk=run_id).first()


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
        "progress": run.progress,  # 0..100, never decreasing (services.training_progress_percent)
        "undelivered": run.stage == "undelivered",
        "message": run.message,
        "decision": run.decision,
        "result_version_id": run.result_version_id,
        "process_id": run.process_id,
        "picked_up_at": run.picked_up_at.isoformat() if run.picked_up_at else None,
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


def prediction_data(*, prediction: Prediction) -> dict[str, Any]:
    """A stored prediction as the dashboard reads it."""
    p = prediction
    return {
        "market": p.market,
        "ts": int(p.ts.timestamp() * 1000),
        "predicted_return": p.predicted_return,
        "predicted_return_pct": p.predicted_return * 100,
        "horizon_s": p.horizon_s,
        "mid": p.mid,
        "model_version": p.model_version.label if p.model_version_id else None,
        "age_s": max(0.0, (dt.datetime.now(dt.UTC) - p.created_at).total_seconds()),
    }


# Reasons the promotion rule gives (mlmodel.services.registry.promotion_decision), in the reader's language.
_REASONS = {
    "does not beat persistence on validation": gettext_lazy(
        "its predictions were not better than assuming no change (persistence) on the validation data"
    ),
}


def _refusal(run: TrainingRun) -> str:
    if run.state == TrainingState.FAILED:
        first = (run.message or "").strip().splitlines()
        text = first[0] if first else ""
        return (text[:197] + "…") if len(text) > 200 else text or _("the training run failed")
    decision = run.decision or {}
    if not decision:
        return _("its candidate waits for an operator to promote it")
    reason = str(decision.get("reason", ""))
    return str(_REASONS.get(reason, reason))


def model_state_get(*, market: str) -> dict[str, Any]:
    """Which state a market's prediction model is in, in words a user reads on the dashboard: ``active``
    (model vN), ``training`` (the first model, with its progress), ``not_promoted`` (the last attempt's
    candidate failed the promotion rule, or the run failed: why, and when the next try comes),
    ``collecting`` (N of M minutes of data recorded), ``not_recorded`` (the collector does not record the
    market) or ``none`` (no model and no automatic first model)."""
    out: dict[str, Any] = {
        "market": market,
        "state": "none",
        "message": "",
        "model": None,
        "prediction": None,
        "collected_minutes": None,
        "needed_minutes": None,
        "progress": None,
        "run_id": None,
        "reason": "",
    }
    version = model_active(market=market)
    if version is not None:
        latest = prediction_latest(market=market)
        out.update(
            state="active",
            model=model_summary(version=version),
            prediction=prediction_data(prediction=latest) if latest is not None else None,
            message=_("Model v%(version)s active") % {"version": version.version},
        )
        return out
    run = (
        TrainingRun.objects.filter(market=market, state__in=[TrainingState.QUEUED, TrainingState.RUNNING])
        .order_by("-id")
        .first()
    )
    if run is not None:
        pct = int(run.progress)
        out.update(state="training", progress=pct, run_id=run.pk)
        if run.state == TrainingState.QUEUED:
            out["message"] = _("Training the first model: waiting for the ml worker")
        else:
            out["message"] = _("Training the first model: %(pct)s %%") % {"pct": pct}
        return out
    row = ModelBootstrap.objects.filter(market=market).first()
    auto = bootstrap_enabled() and market in bootstrap_markets()
    collected = _minutes(row.collected_s if row else 0.0)
    needed = _minutes(bootstrap_needed_seconds(row), up=True)
    if auto:
        out.update(collected_minutes=collected, needed_minutes=needed)
    last = TrainingRun.objects.filter(market=market).order_by("-id").first()
    if last is not None:
        out.update(state="not_promoted", run_id=last.pk, reason=_refusal(last))
        out["message"] = _("No model passed: %(reason)s.") % {"reason": out["reason"]}
        if auto:
            out["message"] += " " + _("Next try at %(needed)s minutes of data (%(collected)s recorded).") % {
                "needed": needed,
                "collected": collected,
            }
        return out
    if auto:
        out["state"] = "collecting"
        out["message"] = _("Collecting market data: %(collected)s of %(needed)s minutes") % {
            "collected": collected,
            "needed": needed,
        }
    elif market not in settings.MARKET_CODES:
        out["state"] = "not_recorded"
        out["message"] = _("No model for this market: its data is not recorded.")
    else:
        out["message"] = _("No active model yet")
    return out


# ----------------------------------------------------------------------------- first model (bootstrap)


def bootstrap_enabled() -> bool:
    return bool(conf.get("ML_BOOTSTRAP"))


def bootstrap_min_seconds() -> float:
    return float(conf.get("ML_BOOTSTRAP_MIN_MINUTES")) * 60.0


def bootstrap_markets() -> list[str]:
    """The markets whose first model is trained by itself: ``ML_BOOTSTRAP_MARKETS``, by default every market
    the collector records (``MARKET_CODES``; the dashboard's default market is the first)."""
    chosen = list(conf.get("ML_BOOTSTRAP_MARKETS") or settings.MARKET_CODES)
    return [m for m in chosen if m in settings.MARKET_CODES]


def bootstrap_needed_seconds(row: ModelBootstrap | None) -> float:
    """Recorded data the next attempt waits for: the setting's minimum, or twice the data of the last try."""
    return max(bootstrap_min_seconds(), row.next_at_s if row is not None else 0.0)


def _minutes(seconds: float, *, up: bool = False) -> int:
    """Whole minutes as the dashboard shows them (collected rounded down, needed rounded up)."""
    return int(math.ceil(seconds / 60.0 - 1e-9)) if up else int(seconds // 60)
