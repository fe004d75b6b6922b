"""Training runs: queued from the admin, the bootstrap or the nightly beat, picked up by the ml worker (in
its own process there), executed with live progress, and failed when undelivered, stale or stopped."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import realtime
from core.errors import Conflict, ValidationFailed
from core.queueing import task_queue
from market import dayfiles
from mlmodel import conf
from mlmodel.models import ModelStatus, ModelVersion, TrainingRun, TrainingState, TrainingTrigger
from mlmodel.selectors import training_run_progress
from mlmodel.services.params import POOLED_MARKET, TrainParams
from mlmodel.services.registry import TRAINING_GROUP, model_promote, promotion_decision

logger = logging.getLogger(__name__)

TRAIN_MODEL_TASK = "mlmodel.tasks.train_model"


def training_run_start(
    *,
    market: str,
    params: TrainParams | dict[str, Any] | None = None,
    trigger: str = TrainingTrigger.ADMIN,
    requested_by: Any = None,
    deliver: bool = True,
) -> TrainingRun:
    """Record a queued training run: the one way a run is created (admin, bootstrap, nightly beat, commands).

    The parameters are validated (:class:`TrainParams`); runs whose worker died or that no worker took are
    failed first; then, with the market's unfinished runs locked, a market that still has one raises
    :class:`Conflict`. ``deliver`` queues ``mlmodel.tasks.train_model`` on the ml queue after commit; without
    it the caller runs the run itself (the nightly worker, ``manage.py train``/``ml_bootstrap``), so it counts
    as picked up and is never failed as undelivered."""
    base = params.to_dict() if isinstance(params, TrainParams) else (params or {})
    p = TrainParams.from_dict({**base, "market": market})
    training_runs_fail_stale()
    training_runs_fail_undelivered()
    task_id = str(uuid.uuid4()) if deliver else ""
    with transaction.atomic():
        busy = TrainingRun.objects.select_for_update().filter(
            market=market, state__in=[TrainingState.QUEUED, TrainingState.RUNNING]
        )
        if list(busy.values_list("pk", flat=True)):
            message = _("A training run for %(market)s is already queued or running.")
            raise Conflict(message % {"market": market})
        run = TrainingRun.objects.create(
            market=market,
            params=p.to_dict(),
            trigger=trigger,
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            total_epochs=p.epochs,
            total_splits=p.n_splits,
            celery_task_id=task_id,
            stage="queued",
            picked_up_at=None if deliver else timezone.now(),
        )
    if not deliver:
        return run

    def _send() -> None:
        try:
            task_queue(TRAIN_MODEL_TASK, kwargs={"run_id": run.pk}, queue="ml", task_id=task_id)
        except Exception as exc:  # noqa: BLE001 - any broker error: the run says so instead of waiting
            logger.warning("training run %s could not be queued", run.pk, exc_info=True)
            reason = f"{exc.__class__.__name__}: {exc}"[:300]
            _training_run_fail_undelivered(
                run_id=run.pk,
                message=f"The training run could not be sent to the ml queue ({reason}). "
                "Is the broker running? Start it again once it is.",
            )
            run.refresh_from_db()

    transaction.on_commit(_send)
    return run


def pickup_timeout_s() -> float:
    """How long a queued run may wait for an ml worker to take it (``ML_TRAINING_PICKUP_TIMEOUT_S``)."""
    return float(conf.get("ML_TRAINING_PICKUP_TIMEOUT_S"))


def _training_run_fail_undelivered(*, run_id: int, message: str) -> bool:
    # Conditional on "still queued, not picked up": it races training_run_pickup and exactly one wins.
    now = timezone.now()
    changed = TrainingRun.objects.filter(
        pk=run_id, state=TrainingState.QUEUED, picked_up_at__isnull=True
    ).update(
        state=TrainingState.FAILED, stage="undelivered", finished_at=now, updated_at=now, message=message
    )
    return bool(changed)


def training_runs_fail_undelivered(*, timeout_s: float | None = None) -> int:
    """Fail queued runs that no ml worker took within ``timeout_s`` (default: the setting), so that the admin
    says so within a minute or two and "Train now" works again; a late delivery is then refused."""
    timeout = pickup_timeout_s() if timeout_s is None else float(timeout_s)
    cutoff = timezone.now() - dt.timedelta(seconds=timeout)
    message = _(
        "No ml worker picked this run up within %(timeout)s s; is the ml worker running? "
        "(python3 dev.py run starts it; with Redis, check that the worker and the web server use the same "
        "REDIS_URL.) Start it again once it is."
    ) % {"timeout": f"{timeout:.0f}"}
    changed = 0
    stuck = TrainingRun.objects.filter(
        state=TrainingState.QUEUED, picked_up_at__isnull=True, created_at__lt=cutoff
    ).values_list("pk", flat=True)
    for run_id in list(stuck):
        if _training_run_fail_undelivered(run_id=run_id, message=message):
            logger.warning("training run %s: no ml worker picked it up within %.0f s", run_id, timeout)
            changed += 1
    return changed


def training_run_pickup(*, run_id: int) -> TrainingRun | None:
    """The ml worker took the message: mark the run picked up and return it, or None when it must not run
    (missing, already finished, or failed as undelivered before the worker got to it)."""
    now = timezone.now()
    TrainingRun.objects.filter(pk=run_id, state=TrainingState.QUEUED, picked_up_at__isnull=True).update(
        picked_up_at=now, stage="picked up by the ml worker", updated_at=now
    )
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.state != TrainingState.QUEUED:
        return None
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})
    return run


def training_runs_fail_stale(*, max_silence_s: float = 2 * 3600) -> int:
    """A run whose worker died (killed, machine lost) stops writing progress; after ``max_silence_s``
    without an update it is marked failed so that training can be started again."""
    cutoff = timezone.now() - dt.timedelta(seconds=max_silence_s)
    return TrainingRun.objects.filter(
        state__in=[TrainingState.QUEUED, TrainingState.RUNNING], updated_at__lt=cutoff
    ).update(
        state=TrainingState.FAILED,
        stage="failed",
        finished_at=timezone.now(),
        message="No progress for a long time: the worker running it stopped. Start it again.",
    )


def training_progress_percent(*, run: TrainingRun, **fields: Any) -> float:
    """Share of the run done, 0..99 until it finishes: whole splits done plus the current split's epochs.
    Early stopping jumps forward; callers keep the maximum so that the bar never goes backwards."""
    split = int(fields.get("split", run.split) or 0)
    total_splits = max(int(fields.get("total_splits", run.total_splits) or 0), 1)
    epoch = int(fields.get("epoch", run.epoch) or 0)
    total_epochs = max(int(fields.get("total_epochs", run.total_epochs) or 0), 1)
    if split < 1:
        return 0.0
    done = (min(split, total_splits) - 1 + min(epoch, total_epochs) / total_epochs) / total_splits
    return round(min(99.0, 100.0 * done), 1)


def _run_payload(run: TrainingRun) -> dict[str, Any]:
    return training_run_progress(run=run)


def training_run_update(*, run: TrainingRun, **fields: Any) -> None:
    """Write progress fields and push them to the admin's live view."""
    for k, v in fields.items():
        setattr(run, k, v)
    run.save(update_fields=[*fields.keys(), "updated_at"])
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})


def training_run_execute(
    *, run_id: int, on_progress: Callable[[TrainingRun, dict[str, Any]], None] | None = None
) -> TrainingRun | None:
    """Run a queued training run (the worker side). Safe to call twice: only a queued run is started.
    ``on_progress`` sees the run after each progress write (the command's progress bar)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.state != TrainingState.QUEUED:
            return run
        run.state, run.started_at, run.stage = TrainingState.RUNNING, timezone.now(), "starting"
        run.picked_up_at = run.picked_up_at or run.started_at
        run.process_id = os.getpid()
        run.save(update_fields=["state", "started_at", "picked_up_at", "stage", "process_id", "updated_at"])
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})
    params = TrainParams.from_dict(run.params)

    def progress(d: dict[str, Any]) -> None:
        fields: dict[str, Any] = {
            k: d[k]
            for k in ("stage", "epoch", "total_epochs", "train_loss", "val_loss", "eta_seconds")
            if k in d
        }
        if "split" in d:
            if d["split"] != run.split and "epoch" not in d:
                fields["epoch"] = 0  # a new split starts at epoch 0, not at the last split's final epoch
            fields["split"] = d["split"]
            fields["total_splits"] = d.get("total_splits", run.total_splits)
        if "stage" in fields:
            fields["stage"] = str(fields["stage"])[:120]
        fields["progress"] = max(run.progress, training_progress_percent(run=run, **fields))
        training_run_update(run=run, **fields)
        if on_progress is not None:
            on_progress(run, d)

    try:
        if params.pooled:
            _pooled_run_execute(run=run, params=params, progress=progress)
            return run
        incumbent = None
        if params.compare_incumbent:
            incumbent = ModelVersion.objects.filter(market=params.market, status=ModelStatus.ACTIVE).first()
        # Imported here, not at the top: it loads torch, scikit-learn and matplotlib, which the web process
        # and the workers that only queue or watch runs never need.
        from mlmodel.services.train import model_train

        result = model_train(params=params, incumbent=incumbent, progress=progress)
        decision: dict[str, Any] = {}
        if params.promote_if_better:
            decision = _promote_if_better(
                market=params.market, version=result.version, report=result.report, incumbent=incumbent
            )
        message = result.report.get("verdict", "")
        if decision:
            message += f"\nPromotion: {'yes' if decision['promote'] else 'no'} - {decision['reason']}."
        training_run_update(
            run=run,
            state=TrainingState.SUCCEEDED,
            result_version=result.version,
            finished_at=timezone.now(),
            stage="done",
            message=message,
            decision=decision,
            eta_seconds=0.0,
            progress=100.0,
        )
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        text = (
            str(exc) if isinstance(exc, ValidationFailed | ValueError) else f"{exc.__class__.__name__}: {exc}"
        )
        training_run_update(
            run=run,
            state=TrainingState.FAILED,
            finished_at=timezone.now(),
            stage="failed",
            message=text[:2000],
        )
        if not isinstance(exc, ValidationFailed | ValueError):
            raise
    return run


def _promote_if_better(
    *, market: str, version: ModelVersion, report: dict[str, Any], incumbent: ModelVersion | None
) -> dict[str, Any]:
    """The promotion gate's decision for ``version`` of ``market``, applied: promoted when it passed and the
    active model is still the one it was compared with, else the reason noted on the version."""
    decision = promotion_decision(version=version, report=report, incumbent=incumbent)
    current = ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).first()
    if decision["promote"] and (current.pk if current else None) != (incumbent.pk if incumbent else None):
        decision = {
            **decision,
            "promote": False,
            "reason": "the active model changed during training; compare again before promoting",
        }
    if decision["promote"]:
        model_promote(version=version, note=f"auto: {decision['reason']}"[:300])
    else:  # the admin's and /model's version list say why it does not trade
        version.status_note = f"not promoted: {decision['reason']}"[:300]
        version.save(update_fields=["status_note"])
    return decision


def _pooled_run_execute(
    *, run: TrainingRun, params: TrainParams, progress: Callable[[dict[str, Any]], None]
) -> None:
    """A pooled run: one LSTM over ``params.markets``, then per market its own gate on its own test periods
    and, with ``promote_if_better``, its own promotion decision against its own active model."""
    from mlmodel.services.pooled import pooled_model_train  # loads torch (see training_run_execute)

    incumbents: dict[str, ModelVersion | None] = {}
    if params.compare_incumbent:
        active = ModelVersion.objects.filter(market__in=list(params.markets), status=ModelStatus.ACTIVE)
        incumbents = {v.market: v for v in active}
    result = pooled_model_train(
        params=params, markets=params.markets, incumbents=incumbents, progress=progress
    )
    decisions: dict[str, Any] = {}
    for market, version in result.versions.items():
        if params.promote_if_better:
            decisions[market] = _promote_if_better(
                market=market,
                version=version,
                report=result.reports[market],
                incumbent=incumbents.get(market),
            )
        else:
            decisions[market] = {
                "promote": False,
                "reason": "not asked to promote",
                "candidate": version.label,
            }
    promoted = sorted(m for m, d in decisions.items() if d.get("promote"))
    lines = [
        f"Pooled model over {len(params.markets)} markets: {len(result.versions)} evaluated, "
        f"{len(promoted)} promoted ({', '.join(promoted) or 'none'})."
    ]
    lines += [
        f"{m}: {'promoted' if d.get('promote') else 'not promoted'} - {d.get('reason', '')}"
        for m, d in sorted(decisions.items())
    ]
    lines += [f"{m}: not evaluated - {why}" for m, why in sorted(result.failed.items())]
    first = next(iter(result.versions.values()), None)
    training_run_update(
        run=run,
        state=TrainingState.SUCCEEDED,
        result_version=first,
        finished_at=timezone.now(),
        stage="done",
        message="\n".join(lines)[:20000],
        decision={"pooled": True, "markets": decisions, "not_evaluated": result.failed},
        eta_seconds=0.0,
        progress=100.0,
    )


def per_market_models() -> list[str]:
    """The markets that also get a model of their own each night (``ML_PER_MARKET_MODELS``); every enabled
    market is covered by the pooled model."""
    return [str(m) for m in (conf.get("ML_PER_MARKET_MODELS") or [])]


def nightly_retrain_prepare(
    *, markets: Sequence[str] | None = None, params: dict[str, Any] | None = None
) -> list[TrainingRun]:
    """Queued nightly runs: one pooled run over every market that has day files (``ML_POOLED_MODEL``),
    then one run of its own for each of those in ``ML_PER_MARKET_MODELS``; a run already queued or
    running (the pooled one or a market's) is not queued twice."""
    base = {**(params or {}), "promote_if_better": True, "compare_incumbent": True}
    with_files = []
    for market in list(markets or settings.MARKET_CODES):
        root = TrainParams.from_dict({**base, "market": market}).root
        if not dayfiles.list_days(root, "orderbook", market):
            logger.info("nightly retrain: no day files", extra={"market": market})
            continue
        with_files.append(market)
    planned: list[TrainParams] = []
    if with_files and conf.get("ML_POOLED_MODEL"):
        planned.append(TrainParams.from_dict({**base, "market": POOLED_MARKET, "markets": with_files}))
    own = set(per_market_models())
    planned += [TrainParams.from_dict({**base, "market": m}) for m in with_files if m in own]
    runs = []
    for p in planned:
        try:
            # Created by the worker that runs it: never sent, never undelivered.
            runs.append(
                training_run_start(
                    market=p.market, params=p, trigger=str(TrainingTrigger.NIGHTLY), deliver=False
                )
            )
        except Conflict:
            logger.warning("nightly retrain: a run is already queued or running", extra={"market": p.market})
    return runs


def training_runs_execute(*, run_ids: Sequence[int]) -> list[TrainingRun]:
    """Run queued runs one after the other; one market's failure does not stop the others."""
    out = []
    for run_id in run_ids:
        try:
            training_run_execute(run_id=run_id)
        except Exception:  # noqa: BLE001 - recorded on the run; go on with the next market
            logger.exception("training run %s failed", run_id)
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is not None:
            out.append(run)
    return out


def nightly_retrain(
    *, markets: Sequence[str] | None = None, params: dict[str, Any] | None = None
) -> list[TrainingRun]:
    """The pooled model over every market with day files, and the own models of ``ML_PER_MARKET_MODELS``:
    each candidate scored with the active model on the same walk-forward test of its market and promoted
    only if it passes that market's gate (inline)."""
    runs = nightly_retrain_prepare(markets=markets, params=params)
    return training_runs_execute(run_ids=[r.pk for r in runs])


def training_in_subprocess() -> bool:
    """In the ml worker, training runs in its own process so that prediction serving (the same one-process
    worker) goes on meanwhile; elsewhere (tests, eager mode, commands) it runs inline."""
    value = conf.get("ML_TRAIN_IN_SUBPROCESS")
    if value is None:
        return os.environ.get("OBSERVATOR_ROLE") == "worker"
    return bool(value)


def training_runs_stop(*, run_ids: Sequence[int], message: str) -> int:
    """Fail the unfinished runs of ``run_ids`` with ``message`` (the training process was stopped)."""
    return TrainingRun.objects.filter(
        pk__in=list(run_ids), state__in=[TrainingState.QUEUED, TrainingState.RUNNING]
    ).update(state=TrainingState.FAILED, finished_at=timezone.now(), stage="failed", message=message[:2000])


def training_runs_spawn(*, run_ids: Sequence[int]) -> int:
    """Start ``manage.py train --run-id ...`` in the background. It stops with the stack: it stays in the ml
    worker's process group (the launcher's SIGTERM to the group reaches it) and watches its parent
    (``--parent-pid``: SIGTERM to itself when the worker is gone, even killed with SIGKILL); stopped, it
    fails its runs "training stopped: the stack was shut down". It enforces ML_TRAIN_TIME_LIMIT_S itself, and
    a run whose process died is failed after two hours without progress. Returns the child's pid."""
    args = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "train", "--no-progress"]
    args += ["--parent-pid", str(os.getpid())]
    for run_id in run_ids:
        args += ["--run-id", str(int(run_id))]
    log_dir = Path(settings.VAR_DIR) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"training-{int(run_ids[0])}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    TrainingRun.objects.filter(pk__in=list(run_ids), state=TrainingState.QUEUED).update(
        stage=f"starting (process {proc.pid})", process_id=proc.pid
    )
    logger.info("training process %s started for runs %s", proc.pid, list(run_ids))
    return int(proc.pid)
