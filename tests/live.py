"""Helpers for tests that run real local processes: free ports, subprocesses, waiting for readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from core.launcher import forwarded_args

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            return httpx.get(url, timeout=2.0, follow_redirects=False)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last!r}")


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1, message: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{message} not met within {timeout}s")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process that must see the same (test) database and services as the tests."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "observator.settings.test"
    env["PYTHONUNBUFFERED"] = "1"
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    elif db["ENGINE"].endswith("mysql"):
        password = db.get("PASSWORD") or ""
        auth = db["USER"] + (f":{password}" if password else "")
        env["DATABASE_URL"] = f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def running(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path = ROOT,
    stop_timeout: float = 10.0,
) -> Iterator[subprocess.Popen]:
    """Start a subprocess in its own process group; on exit send SIGTERM, then SIGKILL after a timeout."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=dict(env) if env else None,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if log_path:
            out.close()  # type: ignore[union-attr]


def asgi_server_args(port: int, *, trusted_proxies: Sequence[str] = ()) -> list[str]:
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "observator.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws",
        "websockets-sansio",  # what the launcher runs (the legacy implementation is deprecated)
        "--lifespan",
        "off",
        "--log-level",
        "warning",
        *forwarded_args(trusted_proxies),  # as the launcher runs it: forwarded headers from nobody by default
    ]


def celery_worker_args(queues: str = "default,ml", concurrency: int = 1) -> list[str]:
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
    ]
