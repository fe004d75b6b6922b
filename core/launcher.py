"""The stack launcher: starts web (ASGI), Celery workers (default + ml), beat and the collector, supervises
them, and falls back to the local Upbit simulator when Upbit is unreachable.

Each child runs in its own session (its own process group), so a stop never depends on who else a signal
reached: Ctrl-C (SIGINT to the terminal's foreground group), SIGTERM or SIGHUP to the launcher all end in
the same shutdown, which asks each child to stop, waits a grace period, then SIGKILLs the child's whole
process group (Celery's pool processes included) and returns only when every group is empty. A child that
dies on its own is restarted with exponential backoff (never once a stop has begun), after the remains of
its group are killed. The console may go away under us (``| tee`` killed by the same Ctrl-C, a closed
terminal): output is then dropped, children's pipes are still drained, and the shutdown goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

PYTHON = sys.executable
GRACE_SECONDS = 15.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_CONSOLE_LEVEL = "WARNING"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class ProcessSpec:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # The processes after this one start once it accepts connections here (the collector would otherwise
    # log a failed connect and a data gap at every start).
    listens_on: int | None = None
    # Stopped after the others (what they connect to: the web server, the simulator).
    stop_last: bool = False


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0


def console_level(environ: Mapping[str, str]) -> str:
    """The stack's log level from ``LOG_LEVEL``: warnings and errors only unless asked for more."""
    level = (environ.get("LOG_LEVEL") or DEFAULT_CONSOLE_LEVEL).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return level


def verbose(level: str) -> bool:
    return LOG_LEVELS.index(level) <= LOG_LEVELS.index("INFO")


def upbit_reachable(rest_url: str, timeout: float = 3.0) -> bool:
    try:
        response = httpx.get(
            f"{rest_url.rstrip('/')}/v1/market/all", params={"isDetails": "false"}, timeout=timeout
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def live_groups(pgids: Iterable[int]) -> set[int]:
    """Those of ``pgids`` whose process group has a live (non-zombie) member: one pass over /proc, or a
    signal 0 to each group where there is no /proc (zombies then count as live)."""
    wanted = set(pgids)
    proc = Path("/proc")
    if not proc.is_dir():
        found = set()
        for pgid in wanted:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            found.add(pgid)
        return found
    found = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) in wanted:
            found.add(int(fields[2]))
    return found


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        write: Callable[[str], None] | None = None,
        grace: float = GRACE_SECONDS,
        ready: Callable[[], str] | None = None,
    ) -> None:
        """``ready``, if given, runs in a thread once every child is started; the line it returns (the
        URL banner, or what is not up) is printed when it returns, unless a stop began meanwhile."""
        self.children = [_Child(spec) for spec in specs]
        self.stopping = threading.Event()
        self.grace = grace
        self._hurry = threading.Event()
        self._ready = ready
        self._write = write or _stdout_write
        self._lock = threading.Lock()
        self._console_gone = False

    # -- output ---------------------------------------------------------------------------------------
    def emit(self, text: str) -> None:
        """Write to the console; if it is gone (broken pipe, closed terminal), drop output from now on."""
        with self._lock:
            if self._console_gone:
                return
            try:
                self._write(text)
            except (OSError, ValueError):
                self._console_gone = True
                if self._write is _stdout_write:
                    _detach_stdout()

    def log(self, message: str) -> None:
        self.emit(f"{'launcher':>10} | {message}\n")

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        # Keeps reading even when the console is gone: a child blocked on a full pipe would never stop.
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                if line:  # Celery prints blank lines around its shutdown notice
                    self.emit(f"{name:>10} | {line}\n")
        stream.close()

    # -- children -------------------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        child.proc = subprocess.Popen(
            _with_parent_death_signal(child.spec.args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session and process group: the launcher alone decides when and how it stops, and
            # one killpg reaches everything it forked.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(child.spec.name, child.proc.stdout), daemon=True).start()
        self.log(f"started {child.spec.name} (pid {child.proc.pid})")

    def _wait_listening(self, child: _Child, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            if child.proc is None or child.proc.poll() is not None:
                return  # it died: the supervision loop reports and restarts it
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            self.stopping.wait(0.1)
        if not self.stopping.is_set():
            self.log(f"{child.spec.name} is not listening on {port} after {timeout:g} s; starting the rest")

    def install_signal_handlers(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)

    def request_stop(self, signum: int | None = None, _frame: object = None) -> None:
        if self.stopping.is_set():
            self._hurry.set()  # a second Ctrl-C: do not wait for the grace period
        self.stopping.set()

    def _announce_when_ready(self) -> None:
        assert self._ready is not None
        try:
            line = self._ready()
        except Exception as exc:  # noqa: BLE001 - a failed check must not take the launcher down
            line = f"readiness check failed: {exc!r}"
        if not self.stopping.is_set():
            self.emit(line + "\n")

    def run(self) -> int:
        for child in self.children:
            if self.stopping.is_set():
                break
            self._start(child)
            if child.spec.listens_on is not None:
                self._wait_listening(child, child.spec.listens_on)
        if self._ready is not None and not self.stopping.is_set():
            threading.Thread(target=self._announce_when_ready, daemon=True).start()
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    # Whatever it forked (e.g. Celery pool processes) must not outlive it.
                    _signal_group(proc.pid, signal.SIGKILL)
                    if self.stopping.is_set():
                        break
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

    def shutdown(self) -> int:
        """Stop every child and everything it forked; return once none is left (0), or 1 if some could
        not be killed. Clients first, then what they talk to (``stop_last``: the web, the simulator), so
        that nothing logs a lost connection on the way out."""
        self.log("stopping all processes")
        running = [c for c in self.children if c.proc is not None]
        start = time.monotonic()
        # The clients get two thirds of the grace period; what they connect to then has a third at least.
        waves = (
            ([c for c in running if not c.spec.stop_last], start + self.grace * 2 / 3),
            ([c for c in running if c.spec.stop_last], start + self.grace),
        )
        for wave, deadline in waves:
            for child in wave:
                assert child.proc is not None
                if child.proc.poll() is None:
                    # The main process only: it stops its own workers in order (Celery's warm shutdown lets
                    # running tasks finish); a signal to the whole group would kill those tasks mid-way.
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(signal.SIGTERM)
            self._wait_stopped(wave, deadline)
        left = self._unstopped(running)
        for child in left:
            self.log(f"{child.spec.name} did not stop within {self.grace:g} s: killing its process group")
            assert child.proc is not None
            _signal_group(child.proc.pid, signal.SIGKILL)
        self._hurry.clear()
        self._wait_stopped(left, time.monotonic() + 5)
        stuck = self._unstopped(running)
        if stuck:
            self.log(f"could not stop: {', '.join(c.spec.name for c in stuck)}")
            return 1
        self.log("all processes stopped")
        return 0

    def _unstopped(self, children: Sequence[_Child]) -> list[_Child]:
        """Those whose main process runs or whose process group still has a live member."""
        groups = live_groups(c.proc.pid for c in children if c.proc is not None)
        return [c for c in children if c.proc is not None and (c.proc.poll() is None or c.proc.pid in groups)]

    def _wait_stopped(self, children: Sequence[_Child], deadline: float) -> None:
        orphans_told: set[int] = set()
        while time.monotonic() < deadline and not self._hurry.is_set():
            left = self._unstopped(children)
            if not left:
                return
            for child in left:
                assert child.proc is not None
                if child.proc.poll() is not None and child.proc.pid not in orphans_told:
                    # Its main process is gone but something it forked is not: that goes too.
                    orphans_told.add(child.proc.pid)
                    _signal_group(child.proc.pid, signal.SIGTERM)
            time.sleep(0.1)


# Linux: a child gets SIGTERM should the launcher die without stopping it (kill -9, the OOM killer), since
# being in its own session no terminal signal reaches it. Set by a stub that then execs the child (the
# setting survives exec), as preexec_fn is unsafe in a process with threads.
_PDEATHSIG_STUB = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(1)  # the launcher died before that\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _with_parent_death_signal(args: list[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return args
    return [PYTHON, "-S", "-c", _PDEATHSIG_STUB, str(os.getpid()), *args]


def _stdout_write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _detach_stdout() -> None:
    """Point fd 1 at /dev/null so that nothing later (buffered output, the interpreter's exit flush)
    raises on the broken console."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def manage_args(*args: str) -> list[str]:
    return [PYTHON, "manage.py", *args]


def forwarded_args(trusted_proxies: Sequence[str]) -> list[str]:
    """uvicorn's arguments for ``X-Forwarded-For``/``-Proto``: believed only from ``TRUSTED_PROXIES``.

    uvicorn's own default believes them from 127.0.0.1, so any local client (or a proxy that passes the
    header through) could choose its address, e.g. a fresh one per failed login; none listed: not read."""
    if not trusted_proxies:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", ",".join(trusted_proxies)]


def metrics_dir(port: int) -> str:
    """The stack's prometheus multiprocess folder: ``var/metrics/<web port>``."""
    from observator.env import VAR_DIR  # reads .env into os.environ when imported: only when asked

    return str(VAR_DIR / "metrics" / str(port))


def build_specs(
    *,
    host: str,
    port: int,
    simulate: bool,
    sim_port: int,
    markets: Sequence[str],
    available_commands: set[str],
    sim_speed: float = 1.0,
    log_level: str = DEFAULT_CONSOLE_LEVEL,
    trusted_proxies: Sequence[str] = (),
    collectors: int = 1,
) -> tuple[list[ProcessSpec], dict[str, str]]:
    """The processes of the stack and the environment they share.

    ``collectors`` > 1 (needs Redis): that many collector processes, ``collector-1``..``collector-N``, split
    the markets through Redis leases (market/leases.py); each labels its metrics ``shard=<i>``.

    ``log_level`` (``LOG_LEVEL``) sets every child's threshold: at WARNING, the default, the console shows
    warnings, errors and the launcher's own lines; INFO adds startup banners, task and access logs.
    ``trusted_proxies`` (``TRUSTED_PROXIES``): the only peers whose forwarded headers the web server reads.
    """
    shared: dict[str, str] = {
        "REALTIME_RELAY_URL": f"http://127.0.0.1:{port}/internal/realtime/",
        "LOG_LEVEL": log_level,
        # One folder per stack for prometheus-client's multiprocess files (core/metrics.py); runstack
        # empties it before the children start.
        "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR") or metrics_dir(port),
    }
    chatty = verbose(log_level)
    specs: list[ProcessSpec] = []
    if simulate:
        shared.update(
            {
                "UPBIT_REST_URL": f"http://127.0.0.1:{sim_port}",
                "UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1",
                "MARKET_SIMULATED": "true",
                # The demo market plants predictable order flow (docs/simulator.md) unless told otherwise;
                # the simulator reads it, the web shows it in the "simulated market" banner.
                "SIM_SIGNAL_STRENGTH": os.environ.get("SIM_SIGNAL_STRENGTH") or "1",
            }
        )
        if float(shared["SIM_SIGNAL_STRENGTH"]) > 0:
            # Every model of the stack (the first model, Train now, nightly) predicts the planted signal's
            # horizon: the jumps come 5 s after their announcement, and 100 books (~5.5 s of the ~18 books/s
            # the collector records) cover the announcement. The promotion gate is the same as ever.
            shared["ML_HORIZON_S"] = os.environ.get("ML_HORIZON_S") or "5"
            shared["ML_WINDOW"] = os.environ.get("ML_WINDOW") or "100"
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
                listens_on=sim_port,
                stop_last=True,
            )
        )
    # --quiet: no startup banner (30 lines a worker); the log level does the rest.
    celery = [PYTHON, "-m", "celery", "-A", "celery_app", *([] if chatty else ["--quiet"])]
    celery_env: dict[str, str] = {}
    if not chatty and os.name == "posix" and os.geteuid() == 0:
        # Run as root (containers, CI), a worker warns on every start; this stack never accepts pickle, so
        # the warning has nothing to act on. Filtered by its text only, without C_FORCE_ROOT.
        ignore = "ignore:You're running the worker with superuser privileges"
        celery_env["PYTHONWARNINGS"] = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), ignore)))
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
                # The sans-I/O implementation of the websockets library: the legacy one is deprecated.
                "websockets-sansio",
                "--lifespan",
                "off",
                "--log-level",
                log_level.lower(),
                *([] if chatty else ["--no-access-log"]),
                # Live market frames are small and go to hundreds of sockets: compressing each frame per
                # socket doubles the server's CPU per frame (bench/bench_fanout.py), for little saved.
                "--ws-per-message-deflate",
                "false",
                *forwarded_args(trusted_proxies),
            ],
            {"OBSERVATOR_ROLE": "web"},
            stop_last=True,
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
                log_level,
            ],
            {"OBSERVATOR_ROLE": "worker", **celery_env},
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
                log_level,
            ],
            {"OBSERVATOR_ROLE": "worker", **celery_env},
        ),
        ProcessSpec(
            "beat", [*celery, "beat", "--loglevel", log_level, "--pidfile="], {"OBSERVATOR_ROLE": "beat"}
        ),
    ]
    if "collect" in available_commands and collectors > 1:
        for i in range(1, collectors + 1):
            args = manage_args("collect", "--markets", ",".join(markets), "--leases", "on")
            env = {"OBSERVATOR_ROLE": "collector", "COLLECTOR_SHARD": str(i)}
            specs.append(ProcessSpec(f"collector-{i}", args, env))
    elif "collect" in available_commands:
        specs.append(ProcessSpec("collector", manage_args("collect", "--markets", ",".join(markets)),
                                 {"OBSERVATOR_ROLE": "collector"}))  # fmt: skip
    else:  # until the market-data work lands, a placeholder the launcher still supervises
        placeholder = [
            PYTHON,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); "
            "print('collector placeholder: market data collector not installed', flush=True); "
            "[time.sleep(3600) for _ in iter(int, 1)]",
        ]
        specs.append(ProcessSpec("collector", placeholder, {"OBSERVATOR_ROLE": "collector"}))
    for spec in specs:
        spec.env = {**shared, **spec.env}
    return specs, shared


def http_ok(url: str, deadline: float) -> bool:
    """Whether ``url`` answers 200 before ``deadline`` (monotonic), asking every half second."""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        time.sleep(0.5)
    return False


def readiness(
    *,
    url: str,
    health_url: str,
    queues: Sequence[str],
    ping: Callable[[str, float], bool],
    timeout: float = 180.0,
) -> Callable[[], str]:
    """A check for ``Supervisor(ready=...)``: the web answers ``health_url`` and a worker answers a ping
    on each queue; it returns the URL banner, or says what did not come up."""

    def check() -> str:
        start = time.monotonic()
        deadline = start + timeout
        missing = [] if http_ok(health_url, deadline) else ["web"]
        missing += [f"{queue} worker" for queue in queues if not ping(queue, deadline)]
        if missing:
            return (
                f"OBservator on {url} -- NOT READY after {timeout:g} s: {', '.join(missing)} did not "
                "answer (LOG_LEVEL=INFO shows more; Ctrl-C stops everything)"
            )
        took = time.monotonic() - start
        return f"OBservator on {url} (ready in {took:.0f} s; Ctrl-C stops everything)"

    return check
