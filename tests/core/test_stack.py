"""The stack as an operator runs it: the launcher, production settings, log redaction, the realtime relay."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from channels.layers import InMemoryChannelLayer

from core import realtime
from core.logging import RedactSecretsFilter, register_secret
from tests import live
from tests.core.procs import alive, family, processes

BANNER = re.compile(r"^OBservator on http://\S+ \(ready in .*$", re.M)
# What filled the console before (issue 12): deprecation and root warnings, broker chatter, requests.
NOISE = ("Deprecat", "superuser", "No hostname", "objects imported", "HTTP Request", "Traceback")


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a stack of our own: its own var dir (embedded broker, data files) and, on Redis,
    an empty database of its own, so that no other run's queued tasks reach its workers."""
    extra = {"OBSERVATOR_VAR_DIR": str(tmp_path / "var")}
    url = os.environ.get("REDIS_URL", "")
    client = None
    if url:
        base = url.rsplit("/", 1)[0] if url.rsplit("/", 1)[-1].isdigit() else url.rstrip("/")
        for db in random.sample(range(1, 16), 15):
            candidate = redis.Redis.from_url(f"{base}/{db}")
            if candidate.dbsize() == 0:
                client, extra["REDIS_URL"] = candidate, f"{base}/{db}"
                break
    yield live.child_env(extra)
    if client is not None:
        client.flushdb()


def _pid_of(text: str, name: str, nth: int = -1) -> int:
    """The pid of ``name`` from the launcher's "started NAME (pid N)" lines (the last start by default)."""
    return int(re.findall(rf"started {name} \(pid (\d+)\)", text)[nth])


def _started(log: Path, name: str, times: int = 1) -> bool:
    return log.exists() and len(re.findall(rf"started {name} \(pid \d+\)", log.read_text())) >= times


def _kill_and_wait_restart(log: Path, name: str) -> tuple[int, int]:
    """SIGKILL a child's main process (its pool processes stay behind) and wait until the launcher has
    restarted it and the new one has its pool again. Returns (old pid, new pid)."""
    old = _pid_of(log.read_text(), name)
    live.wait_until(lambda: len(family({old})) >= 2, timeout=60, message=f"{name}'s pool process")
    os.kill(old, signal.SIGKILL)
    live.wait_until(lambda: _started(log, name, times=2), timeout=60, message=f"{name} restarted")
    new = _pid_of(log.read_text(), name)
    live.wait_until(lambda: len(family({new})) >= 2, timeout=90, message=f"restarted {name}'s pool process")
    return old, new


def _everything_started(log: Path, launcher: int) -> set[int]:
    """The launcher and every process of every group it started, past ones included."""
    pgids = {int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", log.read_text())}
    return family(pgids) | pgids | {launcher}


@pytest.mark.live
@pytest.mark.timeout(600)  # a whole stack, a restart and a stop on a shared 2-core box
def test_launcher_falls_back_to_the_simulator_and_sigterm_stops_every_process(
    transactional_db, tmp_path, stack_env
):
    """Upbit unreachable: every process starts, the simulator stands in, /login answers; then the ml worker
    dies and is restarted, and a SIGTERM to the launcher stops all of it, Celery pool processes included."""
    port, sim_port = live.free_port(), live.free_port()
    log = tmp_path / "stack.log"
    env = {**stack_env, "UPBIT_REST_URL": "https://api.upbit.invalid"}
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
        _kill_and_wait_restart(log, "ml")
        everyone = _everything_started(log, proc.pid)
        assert len(everyone) >= 10  # launcher, 6 children, pool processes of both workers
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        _clean_up(log, proc.pid)
        proc.wait(timeout=10)
    assert alive(everyone | _everything_started(log, proc.pid)) == set()
    assert log.read_text().rstrip().endswith("all processes stopped")


@pytest.mark.live
@pytest.mark.timeout(600)  # a whole stack, a restart and a stop on a shared 2-core box
def test_demo_stack_console_is_quiet_and_ctrl_c_on_a_tee_stops_everything(
    transactional_db, tmp_path, stack_env
):
    """`python3 dev.py run --demo | tee run.log`: start-up says one line a process, the URL banner comes
    once everything answers, then the console stays quiet; Ctrl-C (SIGINT to the whole foreground group,
    tee included) stops every process, the ml worker the launcher had restarted and its pool included."""
    port, sim_port = live.free_port(), live.free_port()
    log = tmp_path / "run.log"
    env = dict(stack_env)
    env.pop("LOG_LEVEL", None)  # the default, as a new user has it
    runstack = f"'{live.PYTHON}' manage.py runstack --demo --port {port} --sim-port {sim_port}"
    shell = subprocess.Popen(
        ["/bin/sh", "-c", f"{runstack} 2>&1 | tee '{log}' > /dev/null"],
        cwd=live.ROOT,
        env=env,
        start_new_session=True,  # the test's stand-in for the terminal's foreground process group
    )
    try:
        try:
            banner = live.wait_until(lambda: log.exists() and BANNER.search(log.read_text()), timeout=240)
        except TimeoutError:
            pytest.fail("no URL banner within 240 s:\n" + (log.read_text() if log.exists() else ""))
        # Printed only once the web answers and both workers answered a ping (else it says NOT READY).
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        startup = log.read_text().splitlines()
        assert startup.index(banner.group(0)) == len(startup) - 1  # the last line, nothing scrolls it away
        launcher = next(
            pid
            for pid, (_pp, pg, state, cmd) in processes().items()
            if state != "Z" and pg == shell.pid and cmd.split()[1:3] == ["manage.py", "runstack"]
        )
        time.sleep(60)
        lines = log.read_text().splitlines()
        after = lines[len(startup) :]
        print(f"console: {len(startup)} lines to the banner, {len(after)} in the next minute")  # noqa: T201
        # One line a process (the launcher's "started ...") and a few of the processes' own; was ~1,700/min.
        assert len(startup) <= 20, "\n".join(startup)
        assert len(after) <= 6, "\n".join(after)
        for noise in (
            "Deprecat",
            "superuser",
            "No hostname",
            "objects imported",
            "HTTP Request",
            "Traceback",
        ):
            assert noise not in "\n".join(lines), noise

        _kill_and_wait_restart(log, "ml")
        everyone = _everything_started(log, launcher)
        os.killpg(shell.pid, signal.SIGINT)  # Ctrl-C: the launcher, sh and tee all get it; tee dies
        live.wait_until(lambda: not alive({launcher}), timeout=60, message="the launcher exited")
        assert alive(everyone | _everything_started(log, launcher)) == set()
    finally:
        _clean_up(log, shell.pid)
        shell.wait(timeout=10)


def _clean_up(log: Path, group: int) -> None:
    """After a failure: what the launcher started lives in sessions of its own, so a SIGKILL of the test's
    process group alone would leave it running. Stop the launcher politely, then kill every group."""
    text = log.read_text() if log.exists() else ""
    started = {int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", text)}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        live.wait_until(lambda: not family({group} | started), timeout=40)
    for pgid in {group} | started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


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


def test_relay_outage_is_logged_once_and_its_end_once(monkeypatch, settings, caplog):
    """The collector pushes ten times a second a market: a web restart must not log one warning a push."""

    class Client:
        up = False

        def post(self, *args: object, **kwargs: object) -> httpx.Response:
            if not self.up:
                raise httpx.ConnectError("refused")
            return httpx.Response(204)

    client = Client()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setenv("OBSERVATOR_ROLE", "collector")
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: InMemoryChannelLayer())
    monkeypatch.setattr(realtime, "_http", lambda: client)
    monkeypatch.setattr(realtime, "_relay_state", realtime._RelayState())
    with caplog.at_level(logging.WARNING, logger="core.realtime"):
        for _ in range(50):
            realtime.publish("market.KRW-BTC", {"type": "market.update"})
        client.up = True
        for _ in range(50):
            realtime.publish("market.KRW-BTC", {"type": "market.update"})
    messages = [r.getMessage() for r in caplog.records if r.name == "core.realtime"]
    assert len(messages) == 2, messages
    assert messages[0].startswith("realtime relay unavailable (ConnectError)")
    assert messages[1].startswith("realtime relay back after") and "(50 pushes dropped)" in messages[1]
