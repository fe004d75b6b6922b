"""The stack as an operator runs it: the launcher, production settings, log redaction, the realtime relay."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import time

import httpx
import pytest

from core.logging import RedactSecretsFilter, register_secret
from tests import live


def _pids_in_session(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


@pytest.mark.live
def test_launcher_starts_every_process_serves_login_and_stops_cleanly(transactional_db, tmp_path):
    port, sim_port = live.free_port(), live.free_port()
    log = tmp_path / "stack.log"
    env = live.child_env({"UPBIT_REST_URL": "https://api.upbit.invalid"})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [live.PYTHON, "manage.py", "runstack", "--port", str(port), "--sim-port", str(sim_port)],
            cwd=live.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        response = live.wait_until(
            lambda: _get(f"http://127.0.0.1:{port}/login"), timeout=90, message="/login answers 200"
        )
        text = log.read_text()
        for name in ("web", "worker", "ml", "beat", "collector", "simulator"):
            assert f"started {name}" in text, name
        # Upbit is unreachable here, so the launcher fell back to the simulator and every page says so.
        assert 'data-testid="simulated-banner"' in response.text
        assert len(_pids_in_session(proc.pid)) >= 6
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=40)
    deadline = time.monotonic() + 10
    while _pids_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids_in_session(proc.pid) == []
    assert "all processes stopped" in log.read_text()


def _get(url: str) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def test_deploy_check_passes_with_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "observator.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "observator.example.com",
    }
    result = subprocess.run(
        [live.PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "observator.settings.production"
    env["OBSERVATOR_VAR_DIR"] = "/nonexistent-var"
    result = subprocess.run(
        [live.PYTHON, "manage.py", "check"],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_log_filter_redacts_keys_tokens_and_registered_values(caplog):
    secret = "S3cr3tValue" + "x" * 29
    register_secret(secret)
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "saving %s and secret_key=%s", ("k", secret), None
    )
    RedactSecretsFilter().filter(record)
    message = record.getMessage()
    assert secret not in message
    assert "[REDACTED]" in message
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJhY2Nlc3Nfa2V5IjoieCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "Authorization: Bearer %s", (jwt_like,), None)
    RedactSecretsFilter().filter(record)
    assert jwt_like not in record.getMessage()


@pytest.mark.live
def test_realtime_relay_rejects_unauthenticated_posts(asgi_server):
    response = httpx.post(
        f"{asgi_server}/internal/realtime/", json=[{"group": "g", "message": {"type": "x"}}]
    )
    assert response.status_code == 403
