"""In the ml worker models load in a background thread, never inside a task's time limit; a batch past the
soft time limit is dropped with one warning (issue 12)."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from mlmodel import serving, tasks


def test_a_batch_past_the_soft_time_limit_is_dropped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def slow(**_: Any) -> list[dict[str, Any]]:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks, "market_data_ingest", slow)
    with caplog.at_level(logging.WARNING, logger="mlmodel.tasks"):
        assert tasks.ingest_market_data.run(batch={}) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "a prediction batch ran past its time limit and was dropped"
    ]


def test_a_model_loads_in_a_thread_and_a_batch_waits_only_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    threads: list[str] = []

    def load_now(self: serving.Server, version: Any) -> Any:
        threads.append(threading.current_thread().name)
        release.wait(10)
        loaded = serving.LoadedModel(version.pk, "v1", version.artifact_sha256, None, None)  # type: ignore[arg-type]
        self.models[version.pk] = loaded
        return loaded

    monkeypatch.setattr(serving.Server, "_load_now", load_now)
    monkeypatch.setattr(serving, "LOAD_WAIT_S", 0.2)
    server = serving.Server()
    server.background_loads = True
    version = SimpleNamespace(pk=7, artifact_sha256="abc")
    assert server._model_for(version) is None  # still loading: this batch goes on without it
    assert server._model_in_background(version, wait=0) is None  # the same load, not a second one
    release.set()
    loaded = server._model_in_background(version, wait=5)
    assert loaded is not None and loaded.sha == "abc"
    assert server._model_for(version) is loaded
    assert threads == ["model-load"]  # once, and never in the task's (main) thread


def test_versions_sharing_an_artifact_load_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooled model's versions (one per market) share one artifact: one load, one loaded model."""
    loads: list[int] = []

    def load_now(self: serving.Server, version: Any) -> Any:
        loads.append(version.pk)
        return self.load(version.pk, f"v{version.pk}", version.artifact_sha256, None)

    monkeypatch.setattr(serving.Server, "_load_now", load_now)
    monkeypatch.setattr(serving.ModelSpec, "of", classmethod(lambda cls, key, predictor, compiled=False: key))
    for background in (False, True):
        server = serving.Server()
        server.background_loads = background
        loads.clear()
        a, b = (
            SimpleNamespace(pk=1, artifact_sha256="pooled"),
            SimpleNamespace(pk=2, artifact_sha256="pooled"),
        )
        first = server._model_for(a) or server._model_in_background(a, wait=5)
        assert first is not None
        assert server._model_for(b) is first
        assert loads == [1]
