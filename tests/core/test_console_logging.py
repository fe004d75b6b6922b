"""What one request error prints on the console of a process configured like the launcher's children
(``observator.settings.local``: DEBUG on, LOG_LEVEL from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import django
django.setup()
from django.http import HttpResponse, HttpResponseServerError
from django.test import RequestFactory
from django.utils.log import log_response
request = RequestFactory().post("/api/trading/orders/buy/")
log_response("Bad Request: %s", request.path, response=HttpResponse(status=400), request=request)
log_response("Internal Server Error: %s", request.path, response=HttpResponseServerError(), request=request)
"""


def _console(level: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="observator.settings.local", LOG_LEVEL=level, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "Request" in line or "Error" in line]


def test_a_client_error_is_quiet_by_default_and_a_server_error_prints_once_as_json() -> None:
    lines = _console("WARNING")
    assert len(lines) == 1, lines  # Django's DEBUG console handler used to print each a second time
    assert json.loads(lines[0])["message"] == "Internal Server Error: /api/trading/orders/buy/"


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_client_errors_are_logged_once_when_asked_for(level: str) -> None:
    lines = _console(level)
    assert [json.loads(line)["status_code"] for line in lines] == [400, 500], lines


WORKER_SCRIPT = """
import logging
from celery_app import app
app.loader.import_default_modules()
app.log.setup(loglevel="WARNING")  # what `celery worker` does at start
logging.getLogger("mlmodel.serving").warning("behind the collector")
"""


def test_celery_workers_log_through_the_project_config_not_celerys_root_handler() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="observator.settings.local", LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "behind the collector" in line]
    assert len(lines) == 1, lines  # Celery's "[... WARNING/MainProcess] ..." line was printed instead
    record = json.loads(lines[0])
    assert record["logger"] == "mlmodel.serving" and record["time"].endswith("+00:00")
