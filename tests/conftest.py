"""Root fixtures: outside network blocked, live ASGI server and Celery worker on demand."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import live

# Shared fixture modules: moto S3 server (s3_endpoint, s3), a Chromium page (page).
pytest_plugins = ["tests.s3", "tests.browser"]

_real_connect = socket.socket.connect
_ALLOWED_PREFIXES = ("127.", "::1", "localhost")


def _guarded_connect(self: socket.socket, address):  # noqa: ANN001
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith(_ALLOWED_PREFIXES) or self.family == socket.AF_UNIX):
        raise OSError(f"tests must not reach the outside network (tried {host})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _block_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


_APP_LOGGERS = ("core", "accounts", "market", "mlmodel", "trading")


@pytest.fixture(autouse=True)
def _app_loggers_reach_caplog() -> None:
    """Every test starts with the project's loggers enabled and propagating to the root, where caplog listens.
    A library configured in-process by an earlier test (Django/Celery logging setup) can leave a logger
    disabled or not propagating, which made "logged once" tests pass alone and fail in the full run."""
    import logging

    logging.disable(logging.NOTSET)
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in _APP_LOGGERS:
            logger = logging.getLogger(name)
            logger.disabled = False
            logger.propagate = True


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTIFACTS_DIR", live.ROOT / "var" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs REDIS_URL (CI runs with the real Redis)")
    return url


@pytest.fixture
def asgi_server(transactional_db, tmp_path: Path) -> Iterator[str]:  # noqa: ANN001
    """The real ASGI server (uvicorn) in a subprocess on a free port, sharing the test database."""
    port = live.free_port()
    log = tmp_path / "asgi.log"
    with live.running(
        live.asgi_server_args(port), env=live.child_env({"OBSERVATOR_ROLE": "web"}), log_path=log
    ) as proc:
        live.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def celery_worker_process(transactional_db, redis_url: str, tmp_path: Path) -> Iterator[None]:  # noqa: ANN001
    """A real Celery worker process on Redis, consuming the default and ml queues."""
    log = tmp_path / "celery.log"
    with live.running(
        live.celery_worker_args(), env=live.child_env({"OBSERVATOR_ROLE": "worker"}), log_path=log
    ) as proc:
        from celery_app import app

        def _ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log.read_text()[-2000:]}")
            replies = app.control.ping(timeout=0.5)
            return bool(replies)

        live.wait_until(_ready, timeout=60, message="celery worker ready")
        yield
