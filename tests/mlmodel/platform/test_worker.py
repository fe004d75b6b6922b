"""Through a real Celery worker on Redis: "train now" runs training in its own process, and the one-process
ml worker keeps serving predictions while it trains."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from mlmodel import tasks
from mlmodel.models import ModelVersion, Prediction, TrainingRun, TrainingState
from mlmodel.services.registry import model_promote
from mlmodel.services.runs import training_run_start
from tests import live
from tests.autotrade.test_e2e_celery import batch, register
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_media(settings: Any) -> Any:
    """The worker process reads and writes artifacts in the test settings' default storage."""
    media = live.ROOT / "var" / "media"
    settings.MEDIA_ROOT = media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    yield media
    from django.core.files.storage import default_storage

    for v in ModelVersion.objects.all():
        v.artifact.delete(save=False)
        for path in (v.plots or {}).values():
            default_storage.delete(path)


def test_training_runs_in_its_own_process_while_predictions_go_on(
    _ml_env: dict[str, Path], shared_media, celery_worker_process
):
    model_promote_const = register(1, 0.001)
    model_promote(version=model_promote_const)
    synthetic_days(_ml_env["data"])
    params = small_params(
        data_dir=str(_ml_env["data"]),
        epochs=20,
        patience=20,
        spikes=False,
        compare_incumbent=False,
        max_samples_per_epoch=20000,
    )
    run = training_run_start(market=MARKET, params=params)
    try:
        _check(run)
    finally:  # a failed check must not leave the detached training process running into the next test
        run.refresh_from_db()
        if not run.is_finished and run.process_id:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.process_id, signal.SIGTERM)
            live.wait_until(
                lambda: TrainingRun.objects.get(pk=run.pk).is_finished,
                timeout=30,
                message="the training process stopped",
            )
        assert run.process_id and run.process_id != os.getpid()  # it ran in its own process


def _check(run: TrainingRun) -> None:

    def running() -> bool:
        run.refresh_from_db()
        assert run.state != TrainingState.FAILED, run.message
        return run.state == TrainingState.RUNNING and run.epoch >= 1

    live.wait_until(running, timeout=120, message="training started in its own process")
    assert run.stage.startswith("split")
    t0 = int(time.time() * 1000)
    tasks.ingest_market_data.apply_async(kwargs={"batch": batch(12, t0)}, queue="ml")
    live.wait_until(
        lambda: Prediction.objects.filter(market=MARKET).exists(),
        timeout=30,
        message="a prediction served while training",
    )
    run.refresh_from_db()
    assert run.state == TrainingState.RUNNING  # the worker served it in the middle of the training
    live.wait_until(
        lambda: TrainingRun.objects.get(pk=run.pk).is_finished, timeout=240, message="training done"
    )
    run.refresh_from_db()
    assert run.state == TrainingState.SUCCEEDED, run.message
    assert run.result_version is not None and run.epoch >= 1
