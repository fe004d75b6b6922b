"""Queue a Celery task by its registered name, so that a service never imports a ``tasks`` module (which
imports the services back): the one way the apps' services enqueue their own app's tasks."""

from __future__ import annotations

import importlib
from typing import Any

from celery.result import AsyncResult

from celery_app import app


def task_queue(name: str, **options: Any) -> AsyncResult:
    """``apply_async(**options)`` of the task registered as ``name`` (``<module>.<function>``; the module is
    imported on first use), so that eager mode and the task's own options apply as when it is called
    directly. ``options`` are ``apply_async``'s: ``args``, ``kwargs``, ``queue``, ``eta``, ``task_id``, ..."""
    task = app.tasks.get(name)
    if task is None:
        importlib.import_module(name.rpartition(".")[0])  # registers it (a web process may not have yet)
        task = app.tasks[name]
    return task.apply_async(**options)
