"""The stack launcher: starts web (ASGI), Celery workers (default + ml), beat and the collector as one
supervised foreground process group; falls back to the local Upbit simulator when Upbit is unreachable.

Children inherit the launcher's process group, so Ctrl-C in the terminal reaches all of them at once;
the launcher then waits for each to stop, escalating to SIGTERM and SIGKILL after a grace period.
A child that dies on its own is restarted with exponential backoff.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

PYTHON = sys.executable
GRACE_SECONDS = 15.0


@dataclass
class ProcessSpec:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0


def upbit_reachable(rest_url: str, timeout: float = 3.0) -> bool:
    try:
        response = httpx.get(
            f"{rest_url.rstrip('/')}/v1/market/all", params={"isDetails": "false"}, timeout=timeout
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _pump(name: str, stream, write: Callable[[str], None]) -> None:  # noqa: ANN001
    for raw in iter(stream.readline, b""):
        write(f"{name:>10} | {raw.decode(errors='replace').rstrip()}\n")
    stream.close()


class Supervisor:
    def __init__(self, specs: Sequence[ProcessSpec], *, write: Callable[[str], None] | None = None) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.stopping = threading.Event()
        self._write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        self._lock = threading.Lock()

    def log(self, message: str) -> None:
        with self._lock:
            self._write(f"{'launcher':>10} | {message}\n")

    def _start(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        child.proc = subprocess.Popen(
            child.spec.args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        child.started_at = time.monotonic()
        threading.Thread(
            target=_pump, args=(child.spec.name, child.proc.stdout, self._locked_write), daemon=True
        ).start()
        self.log(f"started {child.spec.name} (pid {child.proc.pid})")

    def _locked_write(self, text: str) -> None:
        with self._lock:
            self._write(text)

    def run(self) -> int:
        for child in self.children:
            self._start(child)
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    self.log(f"{child.spec.name} exited with {proc.returncode}; restarting")
                    # A child that ran a while is healthy again: reset its backoff.
                    if now - child.started_at > 60:
                        child.restarts = 0
                    child.restarts += 1
                    child.next_start = now + min(30.0, 0.5 * 2 ** (child.restarts - 1))
                    child.proc = None
                if child.proc is None and now >= child.next_start and not self.stopping.is_set():
                    self._start(child)
            self.stopping.wait(0.2)
        return self.shutdown()

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def shutdown(self) -> int:
        self.log("stopping all processes")
        alive = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in alive:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.log("all processes stopped")
        return 0


def manage_args(*args: str) -> list[str]:
    return [PYTHON, "manage.py", *args]


def build_specs(
    *,
    host: str,
    port: int,
    simulate: bool,
    sim_port: int,
    markets: Sequence[str],
    available_commands: set[str],
    sim_speed: float = 1.0,
) -> tuple[list[ProcessSpec], dict[str, str]]:
    """The processes of the stack and the environment they share."""
    shared: dict[str, str] = {"REALTIME_RELAY_URL": f"http://127.0.0.1:{port}/internal/realtime/"}
    specs: list[ProcessSpec] = []
    if simulate:
        shared.update(
            {
                "UPBIT_REST_URL": f"http://127.0.0.1:{sim_port}",
                "UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1",
                "MARKET_SIMULATED": "true",
            }
        )
        specs.append(
            ProcessSpec(
                "simulator",
                manage_args(
                    "upbit_sim",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(sim_port),
                    "--source",
                    "synthetic",
                    "--markets",
                    ",".join(markets),
                    # N simulated seconds per wall second: an hour of market in minutes (soak tests).
                    *(["--speed", f"{sim_speed:g}"] if sim_speed != 1.0 else []),
                ),
                {"OBSERVATOR_ROLE": "sim"},
            )
        )
    celery = [PYTHON, "-m", "celery", "-A", "celery_app"]
    specs += [
        ProcessSpec(
            "web",
            [
                PYTHON,
                "-m",
                "uvicorn",
                "observator.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--ws",
                "websockets",
                "--lifespan",
                "off",
                "--no-access-log",
                # Live market frames are small and go to hundreds of sockets: compressing each frame per
                # socket doubles the server's CPU per frame (bench/bench_fanout.py), for little saved.
                "--ws-per-message-deflate",
                "false",
            ],
            {"OBSERVATOR_ROLE": "web"},
        ),
        ProcessSpec(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "default",
                "-c",
                "2",
                "-n",
                "default@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            {"OBSERVATOR_ROLE": "worker"},
        ),
        ProcessSpec(
            "ml",
            [
                *celery,
                "worker",
                "-Q",
                "ml",
                "-c",
                "1",
                "-n",
                "ml@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            {"OBSERVATOR_ROLE": "worker"},
        ),
        ProcessSpec(
            "beat", [*celery, "beat", "--loglevel", "INFO", "--pidfile="], {"OBSERVATOR_ROLE": "beat"}
        ),
    ]
    if "collect" in available_commands:
        collector = manage_args("collect", "--markets", ",".join(markets))
    else:  # until the market-data work lands, a placeholder the launcher still supervises
        collector = [
            PYTHON,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); "
            "print('collector placeholder: market data collector not installed', flush=True); "
            "[time.sleep(3600) for _ in iter(int, 1)]",
        ]
    specs.append(ProcessSpec("collector", collector, {"OBSERVATOR_ROLE": "collector"}))
    for spec in specs:
        spec.env = {**shared, **spec.env}
    return specs, shared
