"""The ml worker loads torch and the active models when it starts, outside any task: its first batch is
served with the model already loaded, and a model that loads slower than the task's soft time limit never
breaks a batch (issue 12: an interrupted torch import broke every later batch)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlmodel import tasks
from mlmodel.models import ModelVersion, Prediction
from mlmodel.services.registry import model_promote
from tests import live
from tests.autotrade.test_e2e_celery import batch, register

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_media(settings: Any) -> Iterator[Path]:
    """The worker process reads artifacts from the test settings' default storage."""
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
    for v in ModelVersion.objects.all():
        v.artifact.delete(save=False)


def _ml_worker(tmp_path: Path, delay_s: float) -> Any:
    args = live.celery_worker_args(queues="ml")
    args[args.index("celery_app")] = "tests.mlmodel.platform.ml_worker_app"
    env = live.child_env(
        {
            "OBSERVATOR_ROLE": "worker",
            "ML_TEST_LOAD_LOG": str(tmp_path / "loads.txt"),
            "ML_TEST_LOAD_DELAY_S": str(delay_s),
        }
    )
    return live.running(args, env=env, log_path=tmp_path / "ml.log")


def _wait_ready(proc: Any, log: Path) -> None:
    from celery_app import app

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"ml worker exited: {log.read_text()[-2000:]}")
        return bool(app.control.ping(timeout=0.5))

    live.wait_until(ready, timeout=90, message="ml worker ready")


def _loads(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "loads.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_the_active_model_is_loaded_when_the_worker_starts(redis_url, shared_media, tmp_path):
    version = register(1, 0.001)
    model_promote(version=version)
    with _ml_worker(tmp_path, delay_s=0) as proc:
        _wait_ready(proc, tmp_path / "ml.log")
        # No batch sent yet: the worker loaded the model by itself, in a thread of its own.
        live.wait_until(lambda: _loads(tmp_path), timeout=60, message="model loaded at start")
        assert _loads(tmp_path) == [[str(version.pk), "model-load"]]
        tasks.ingest_market_data.apply_async(kwargs={"batch": batch(12, int(time.time() * 1000))}, queue="ml")
        live.wait_until(
            lambda: Prediction.objects.filter(model_version=version).exists(),
            timeout=30,
            message="the first batch predicted",
        )
    assert len(_loads(tmp_path)) == 1  # the batch used the model loaded at start


def test_a_model_slower_to_load_than_the_time_limit_breaks_no_batch(redis_url, shared_media, tmp_path):
    version = register(1, 0.001)
    model_promote(version=version)
    with _ml_worker(tmp_path, delay_s=25) as proc:  # longer than the task's 20 s soft limit
        _wait_ready(proc, tmp_path / "ml.log")

        def predicted() -> bool:
            now_ms = int(time.time() * 1000)
            tasks.ingest_market_data.apply_async(kwargs={"batch": batch(12, now_ms)}, queue="ml")
            return Prediction.objects.filter(model_version=version).exists()

        live.wait_until(predicted, timeout=120, interval=3, message="predictions once the model loaded")
        log = (tmp_path / "ml.log").read_text()  # before the stop (a batch in flight then is cut short)
    assert "TORCH_LIBRARY" not in log
    assert "SoftTimeLimitExceeded" not in log and "Traceback" not in log, log[-3000:]
    assert [tid for _, tid in _loads(tmp_path)] == ["model-load"]  # loaded once, never inside a task
