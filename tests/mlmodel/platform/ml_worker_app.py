"""``celery -A tests.mlmodel.platform.ml_worker_app``: the project's app with model loading instrumented for
tests/mlmodel/platform/test_worker_start.py - each load sleeps ML_TEST_LOAD_DELAY_S first (a slow disk or a
busy box) and appends ``<version id> <thread name>`` to ML_TEST_LOAD_LOG when done."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import django

from celery_app import app

# The worker's Django fixup sets Django up before it imports tasks; this module patches serving first, so
# it does the same here (serving reads models at import).
django.setup()

from mlmodel import serving  # noqa: E402

__all__ = ["app"]

_original = serving.Server._load_now


def _instrumented(self: serving.Server, version: Any) -> serving.LoadedModel | None:
    time.sleep(float(os.environ.get("ML_TEST_LOAD_DELAY_S", "0")))
    loaded = _original(self, version)
    with open(os.environ["ML_TEST_LOAD_LOG"], "a") as fh:
        fh.write(f"{version.pk} {threading.current_thread().name}\n")
    return loaded


serving.Server._load_now = _instrumented  # type: ignore[method-assign]
