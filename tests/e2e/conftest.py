"""End-to-end fixtures: the real stack (Upbit simulator, ASGI server, collector, Celery worker + beat) on free
ports against the test database, and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 375, "height": 812}
# A port nothing listens on: outside services (other exchanges, FX, news) fail fast and show "stale".
DEAD_URL = "http://127.0.0.1:9"
MARKETS = "KRW-BTC,KRW-ETH"


@dataclass
class Stack:
    base_url: str
    sim_url: str
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    web_port: int = 0

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(self.logs.glob("*.log"))
        )


def _sim_args(port: int) -> list[str]:
    return [
        live.PYTHON,
        "manage.py",
        "upbit_sim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--source",
        "synthetic",
        "--markets",
        MARKETS,
        "--seed",
        "7",
    ]


E2E_REDIS_DB = 13


def _private_redis_db(url: str) -> str:
    import redis

    parts = urlsplit(url)
    private = urlunsplit((parts.scheme, parts.netloc, f"/{E2E_REDIS_DB}", parts.query, parts.fragment))
    client = redis.Redis.from_url(private)
    try:
        client.flushdb()  # leftovers of an earlier run (queued batches, results)
    finally:
        client.close()
    return private


def _worker_args(queues: str, name: str) -> list[str]:
    return [
        live.PYTHON,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "-n",
        f"{name}@%h",
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def _beat_args(schedule: Path) -> list[str]:
    # The file scheduler keeps beat off the test database; the schedule is settings.CELERY_BEAT_SCHEDULE.
    return [
        live.PYTHON,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "beat",
        "--loglevel",
        "WARNING",
        "--scheduler",
        "celery.beat:PersistentScheduler",
        "-s",
        str(schedule),
        "--pidfile=",
    ]


@contextlib.contextmanager
def start_web(stack: Stack, port: int) -> Iterator[subprocess.Popen]:
    env = {**stack.env, "OBSERVATOR_ROLE": "web"}
    with live.running(live.asgi_server_args(port), env=env, log_path=stack.logs / "web.log") as proc:
        live.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        yield proc


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment for every process of the stack (a test module may override this fixture)."""
    return {}


@pytest.fixture
def e2e_stack(transactional_db: Any, tmp_path: Path, stack_env: dict[str, str]) -> Iterator[Stack]:  # noqa: ANN401
    """Simulator + uvicorn + collector + Celery worker and beat, sharing the test database.

    With REDIS_URL set, the channel layer and the broker are Redis; otherwise the in-memory layer (the web
    process relays pushes from the other processes) and the filesystem broker in a private var/ folder."""
    sim_port, web_port = live.free_port(), live.free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)
    env = live.child_env(
        {
            "UPBIT_REST_URL": f"http://127.0.0.1:{sim_port}",
            "UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1",
            "MARKET_SIMULATED": "true",
            "MARKET_CODES": MARKETS,
            "MARKET_DATA_DIR": str(tmp_path / "data"),
            "REALTIME_RELAY_URL": f"http://127.0.0.1:{web_port}/internal/realtime/",
            "OBSERVATOR_VAR_DIR": str(var),
            "BITFLYER_API_URL": DEAD_URL,
            "BINANCE_API_URL": DEAD_URL,
            "OKX_API_URL": DEAD_URL,
            "FX_SOURCE_URL": DEAD_URL,
            "NEWS_FEEDS": DEAD_URL + "/feed.xml",
            "FEEDS_HTTP_TIMEOUT": "0.5",
            "DASHBOARD_STALE_AFTER_S": "4",
            "TZ": "Asia/Seoul",
            **stack_env,
        }
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # for this test process only, never for the servers
    if env.get("REDIS_URL"):
        # A Redis database of its own: no task or event of another test reaches this stack's workers.
        env["REDIS_URL"] = _private_redis_db(env["REDIS_URL"])
    stack = Stack(
        base_url=f"http://127.0.0.1:{web_port}",
        sim_url=f"http://127.0.0.1:{sim_port}",
        env=env,
        logs=logs,
        web_port=web_port,
    )
    with contextlib.ExitStack() as es:
        sim = es.enter_context(
            live.running(
                _sim_args(sim_port), env={**env, "OBSERVATOR_ROLE": "sim"}, log_path=logs / "sim.log"
            )
        )
        live.wait_for_port(sim_port, timeout=30, proc=sim)
        stack.procs["sim"] = sim
        stack.procs["web"] = es.enter_context(start_web(stack, web_port))
        stack.procs["collector"] = es.enter_context(
            live.running(
                [live.PYTHON, "manage.py", "collect", "--markets", MARKETS, "--flush-interval", "2"],
                env={**env, "OBSERVATOR_ROLE": "collector"},
                log_path=logs / "collector.log",
            )
        )
        # Two workers as in production: order work (default) is never queued behind model inference (ml).
        stack.procs["worker"] = es.enter_context(
            live.running(
                _worker_args("default", "default"),
                env={**env, "OBSERVATOR_ROLE": "worker"},
                log_path=logs / "worker.log",
            )
        )
        stack.procs["ml"] = es.enter_context(
            live.running(
                _worker_args("ml", "ml"), env={**env, "OBSERVATOR_ROLE": "worker"}, log_path=logs / "ml.log"
            )
        )
        stack.procs["beat"] = es.enter_context(
            live.running(
                _beat_args(tmp_path / "beat-schedule"),
                env={**env, "OBSERVATOR_ROLE": "beat"},
                log_path=logs / "beat.log",
            )
        )
        try:
            yield stack
        finally:
            for name, proc in stack.procs.items():
                if proc.poll() is not None and name != "web":
                    print(f"[e2e] {name} exited early with {proc.returncode}:\n{stack.log_tail(name)}")


@pytest.fixture
def e2e_model(transactional_db: Any, settings: Any, tmp_path: Path) -> Any:  # noqa: ANN401
    """A small LSTM trained here on synthetic day files (about a second) and promoted for KRW-BTC, its
    artifact in the stack's media folder, so the ml worker serves live predictions to auto-trading."""
    import torch

    from mlmodel.services.params import TrainParams
    from mlmodel.services.registry import model_promote
    from mlmodel.services.train import model_train
    from tests.mlmodel.platform.conftest import small_params
    from tests.mlmodel.platform.daydata import synthetic_days

    torch.set_num_threads(1)
    media = tmp_path / "var" / "media"
    data = tmp_path / "ml-days"
    for path in (media, data, tmp_path / "ml-spikes"):
        path.mkdir(parents=True, exist_ok=True)
    settings.MEDIA_ROOT = media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    settings.MARKET_DATA_DIR = data
    settings.ML_SPIKE_DATA_DIR = tmp_path / "ml-spikes"
    synthetic_days(data)
    version = model_train(params=TrainParams.from_dict(small_params())).version
    return model_promote(version=version)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'); the e2e tests drive that browser")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the tests' ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, e2e_stack: Stack) -> Iterator[Any]:  # noqa: ANN401
    context = browser.new_context(
        viewport=DESKTOP, base_url=e2e_stack.base_url, locale="en-US", timezone_id="Asia/Seoul"
    )
    context.set_default_timeout(15000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    # What a user would see in the browser console: failing requests (any 4xx/5xx) and console errors.
    failed: list[str] = []
    pg.on(
        "response",
        lambda r: failed.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None,
    )
    pg.on(
        "console",
        lambda m: (
            failed.append(f"console {m.type}: {m.text} ({m.location.get('url')})")
            if m.type == "error"
            else None
        ),
    )
    pg.failed_requests = failed  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def screenshot(pg: Any, artifacts_dir: Path, name: str) -> None:  # noqa: ANN401
    """Full-page screenshots of the current page at desktop and phone widths."""
    original = pg.viewport_size
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        pg.set_viewport_size(size)
        pg.evaluate("window.scrollTo(0, 0)")  # sticky header at the top, not where the last click was
        pg.wait_for_timeout(250)  # layout and canvases settle after the resize
        pg.screenshot(path=str(artifacts_dir / f"{name}-{label}.png"), full_page=True)
    pg.set_viewport_size(original)
