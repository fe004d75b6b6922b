"""Celery tasks of the ml queue: training runs, the nightly retrain, and live prediction serving."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init

from market import batchwire
from mlmodel import selectors, serving
from mlmodel.bootstrap import model_bootstrap_check
from mlmodel.services.runs import nightly_retrain as nightly_retrain_inline
from mlmodel.services.runs import (
    nightly_retrain_prepare,
    training_in_subprocess,
    training_run_execute,
    training_run_pickup,
    training_runs_fail_undelivered,
    training_runs_spawn,
)
from mlmodel.serving import market_data_ingest

logger = logging.getLogger(__name__)


@shared_task(
    name="mlmodel.tasks.train_model", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300, acks_late=False
)
def train_model(*, run_id: int) -> dict[str, Any]:
    """Run one queued TrainingRun (progress is written to its row and pushed to the admin). In the ml worker
    the training itself runs in its own process, so predictions keep being served meanwhile. A run already
    failed as undelivered (no worker took it in time) or finished is not started again."""
    if training_run_pickup(run_id=run_id) is None:
        run = selectors.training_run_get(run_id=run_id)
        return {"run_id": run_id, "state": run.state if run else "missing", "started": False}
    if training_in_subprocess():
        pid = training_runs_spawn(run_ids=[run_id])
        return {"run_id": run_id, "state": "spawned", "pid": pid}
    run = training_run_execute(run_id=run_id)
    if run is None:
        return {"run_id": run_id, "state": "missing"}
    return {"run_id": run_id, "state": run.state, "version_id": run.result_version_id}


@shared_task(name="mlmodel.tasks.nightly_retrain", soft_time_limit=10 * 3600, time_limit=10 * 3600 + 300)
def nightly_retrain(markets: list[str] | None = None) -> list[dict[str, Any]]:
    """Beat 00:10: retrain every market and promote a candidate only if it beats the active model."""
    if training_in_subprocess():
        runs = nightly_retrain_prepare(markets=markets)
        if runs:
            training_runs_spawn(run_ids=[r.pk for r in runs])
        return [{"run_id": r.pk, "market": r.market, "state": "spawned"} for r in runs]
    runs = nightly_retrain_inline(markets=markets)
    return [{"run_id": r.pk, "market": r.market, "state": r.state, "decision": r.decision} for r in runs]


@shared_task(name="mlmodel.tasks.ingest_market_data", soft_time_limit=20, time_limit=30, ignore_result=True)
def ingest_market_data(*, batch: dict[str, Any] | None = None, packed: dict[str, Any] | None = None) -> int:
    """The collector's ~1 s batches of all markets: predict with the loaded active models and publish.
    ``packed`` is the collector's binary-packed block (``market.batchwire``); ``batch`` the per-market
    column format (replays, tests). A malformed packed block is logged and dropped; so is a batch that runs
    past the soft time limit (models load outside the task, so the limit never interrupts an import)."""
    try:
        if packed is not None:
            try:
                return len(market_data_ingest(batch=batchwire.decode(packed)))
            except batchwire.BatchFormatError as exc:
                logger.warning("dropped a malformed packed batch: %s", exc)
                return 0
        return len(market_data_ingest(batch=batch or {}))
    except SoftTimeLimitExceeded:
        logger.warning("a prediction batch ran past its time limit and was dropped")
        return 0


# ------------------------------------------------------------------------------------ ml worker start-up
_WARM_UP = False


def _consumes_ml(worker: Any) -> bool:
    try:
        return "ml" in worker.app.amqp.queues.consume_from
    except Exception:  # noqa: BLE001 - an unknown worker shape: no warm-up, models load on demand
        return False


@worker_init.connect
def _ml_worker_init(sender: Any = None, **_: Any) -> None:
    """The ml queue's worker imports torch once in its main process, before the pool forks (no task, no time
    limit), so a pool process - the first and any replacement - starts with it imported."""
    global _WARM_UP
    if sender is None or not _consumes_ml(sender):
        return
    _WARM_UP = True
    from mlmodel import inference  # noqa: F401 - imports torch

    logger.debug("ml worker: torch imported")


@worker_process_init.connect
def _ml_worker_process_init(**_: Any) -> None:
    """Each pool process of the ml worker loads the active models in the background when it starts."""
    if _WARM_UP:
        serving.server_warm_up_start()


@shared_task(
    name="mlmodel.tasks.bootstrap_first_model", soft_time_limit=60, time_limit=90, ignore_result=True
)
def bootstrap_first_model() -> list[dict[str, Any]]:
    """Beat (every ML_BOOTSTRAP_CHECK_S, default queue): queue the first model's training run of a market with
    no active model once enough data is recorded (``mlmodel.bootstrap``)."""
    return [dataclasses.asdict(o) for o in model_bootstrap_check()]


@shared_task(name="mlmodel.tasks.training_runs_check", soft_time_limit=20, time_limit=30, ignore_result=True)
def training_runs_check() -> int:
    """Beat, on the default queue (the ml worker may be the one missing): fail runs no ml worker took within
    ML_TRAINING_PICKUP_TIMEOUT_S, so that the dashboard and the admin say so even when nobody reads them."""
    return training_runs_fail_undelivered()
