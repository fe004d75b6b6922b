"""The launcher's stop: every child, a restarted one too, and everything they forked is gone after Ctrl-C
(SIGINT to the group), SIGTERM or SIGHUP, also when its console (``| tee``) died first; nothing is restarted
once a stop has begun. Stand-in children (tests/core/launcher_driver.py) keep these fast; test_stack.py runs
the real stack the same way."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from core import launcher
from tests import live
from tests.core.procs import alive, family, processes

DRIVER = Path(__file__).with_name("launcher_driver.py")


def children_of(pid: int) -> dict[str, int]:
    """The launcher's children by their ``#child=NAME`` marker."""
    found = {}
    for child, (ppid, _pgid, state, cmd) in processes().items():
        if ppid == pid and state != "Z" and "#child=" in cmd:
            found[cmd.split("#child=")[1].split()[0]] = child
    return found


def launcher_pid(session: int) -> int:
    def find() -> int | None:
        for pid, (_ppid, _pgid, state, cmd) in processes().items():
            if state != "Z" and cmd.split()[1:2] == [str(DRIVER)] and os.getsid(pid) == session:
                return pid
        return None

    return live.wait_until(find, timeout=20, message="the launcher started")


def start(tmp_path: Path, *, pipe: str | None) -> subprocess.Popen:
    """The launcher in its own session, output to a file or through a shell pipe (``| tee``)."""
    log = tmp_path / "launcher.log"
    if pipe is None:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [live.PYTHON, str(DRIVER)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    command = f"'{live.PYTHON}' '{DRIVER}' 2>&1 | {pipe.format(log=log)}"
    return subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True)


@pytest.mark.parametrize(
    ("how", "pipe"),
    [
        ("sigint-group", None),  # Ctrl-C in the terminal
        ("sigterm", None),
        ("sighup", None),  # the terminal closed
        ("sigint-group", "tee {log} > /dev/null"),  # Ctrl-C on `run | tee run.log`: tee dies too
        ("sigterm", "head -c 100 > {log}"),  # the reader went away long before the stop
    ],
)
def test_every_child_and_grandchild_stops_and_the_launcher_exits(tmp_path, how, pipe):
    shell = start(tmp_path, pipe=pipe)
    try:
        pid = launcher_pid(shell.pid)
        kids = live.wait_until(
            lambda: (k := children_of(pid)) and {"pool", "deaf", "leaky"} <= k.keys() and k,
            timeout=20,
            message="children started",
        )
        pool_family = live.wait_until(
            lambda: len(f := family({kids["pool"]})) >= 2 and f, timeout=20, message="pool process"
        )
        # A child dies under the launcher (SIGKILL: its pool process is left behind) and is restarted.
        os.kill(kids["pool"], signal.SIGKILL)
        restarted = live.wait_until(
            lambda: (k := children_of(pid)).get("pool", kids["pool"]) != kids["pool"] and k["pool"],
            timeout=20,
            message="pool restarted",
        )
        live.wait_until(lambda: len(family({restarted})) >= 2, timeout=20, message="restarted pool's pool")
        live.wait_until(lambda: not alive(pool_family), timeout=10, message="the dead child's pool killed")
        kids = children_of(pid)
        everyone = family(set(kids.values()) | {kids["pool"]}) | {pid}
        assert len(everyone) >= 6, everyone  # launcher, 3 children (4 while crashy runs), 2 grandchildren

        if how == "sigint-group":
            os.killpg(shell.pid, signal.SIGINT)
        else:
            os.kill(pid, signal.SIGTERM if how == "sigterm" else signal.SIGHUP)

        live.wait_until(lambda: not alive({pid}), timeout=30, message="the launcher exited")
        # Everything it started, the restarted child and every grandchild included, is gone with it.
        assert alive(everyone | family(set(kids.values()))) == set()
        assert children_of(pid) == {}
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)
    if pipe is None:
        text = (tmp_path / "launcher.log").read_text()
        assert "BANNER all children started" in text
        assert "deaf did not stop within 2 s: killing its process group" in text
        assert text.rstrip().endswith("all processes stopped")
        # The crashing child was restarted all along, but never once the stop had begun.
        tail = text.split("stopping all processes", 1)[1]
        assert "started" not in tail


def test_console_level_defaults_to_warnings_and_rejects_unknown_levels():
    assert launcher.console_level({}) == "WARNING"
    assert launcher.console_level({"LOG_LEVEL": "info"}) == "INFO"
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        launcher.console_level({"LOG_LEVEL": "LOUD"})


def _spec(specs: list[launcher.ProcessSpec], name: str) -> launcher.ProcessSpec:
    return next(s for s in specs if s.name == name)


@pytest.mark.parametrize("level", ["WARNING", "INFO", "DEBUG"])
def test_children_log_at_the_chosen_level(level):
    specs, shared = launcher.build_specs(
        host="127.0.0.1",
        port=8000,
        simulate=True,
        sim_port=8765,
        markets=["KRW-BTC"],
        available_commands={"collect"},
        log_level=level,
    )
    assert shared["LOG_LEVEL"] == level and all(s.env["LOG_LEVEL"] == level for s in specs)
    web = _spec(specs, "web").args
    assert web[web.index("--log-level") + 1] == level.lower()
    assert web[web.index("--ws") + 1] == "websockets-sansio"  # the legacy implementation warns at start
    # Access lines (one per request, the relay's ten a second included) only when asked for.
    assert ("--no-access-log" in web) is (level == "WARNING")
    for name in ("worker", "ml", "beat"):
        args = _spec(specs, name).args
        assert args[args.index("--loglevel") + 1] == level
        assert ("--quiet" in args) is (level == "WARNING")  # Celery's 30-line banner


def test_a_stop_during_startup_starts_nothing_more():
    specs = [launcher.ProcessSpec(n, [live.PYTHON, "-c", "import time; time.sleep(30)"]) for n in "abc"]
    lines: list[str] = []
    supervisor = launcher.Supervisor(specs, write=lines.append, grace=2.0)
    supervisor.request_stop()
    assert supervisor.run() == 0
    assert not any("started" in line for line in lines)


def test_output_to_a_dead_console_is_dropped_and_the_stop_goes_on():
    attempts = []

    def broken(text: str) -> None:
        attempts.append(text)
        raise BrokenPipeError

    specs = [launcher.ProcessSpec("chatty", [live.PYTHON, "-c", "import time\nwhile 1: print('x' * 500)"])]
    supervisor = launcher.Supervisor(specs, write=broken, grace=2.0)
    supervisor._start(supervisor.children[0])
    proc = supervisor.children[0].proc
    # The child's output is still read (and dropped): far more than the 130 lines that fill a pipe, after
    # which a child writing to an unread pipe would hang.
    live.wait_until(lambda: _lines_read(proc) > 2000, timeout=20)
    assert len(attempts) == 1  # the console was given up at the first failure
    assert proc.poll() is None
    assert supervisor.shutdown() == 0
    assert proc.poll() is not None


def _lines_read(proc: subprocess.Popen) -> int:
    """How many lines the child has written so far (its pipe is drained by the supervisor)."""
    try:
        return int(Path(f"/proc/{proc.pid}/io").read_text().split("wchar: ")[1].split()[0]) // 501
    except (OSError, IndexError, ValueError):
        return 0


def test_clients_stop_before_what_they_connect_to():
    """The collector and workers stop before the web server and the simulator, so none of them logs a lost
    connection on the way out."""
    code = (
        "import signal as s, sys, time\n"
        "s.signal(s.SIGTERM, lambda *_: (print('stopping', sys.argv[1], flush=True), sys.exit(0)))\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    specs = [
        launcher.ProcessSpec("server", [live.PYTHON, "-c", code, "server"], stop_last=True),
        launcher.ProcessSpec("client", [live.PYTHON, "-c", code, "client"]),
    ]
    lines: list[str] = []
    supervisor = launcher.Supervisor(specs, write=lines.append, grace=10.0)

    def stop_once_both_are_up() -> None:
        live.wait_until(lambda: sum("| up" in line for line in lines) == 2, timeout=30)
        supervisor.request_stop()

    threading.Thread(target=stop_once_both_are_up, daemon=True).start()
    assert supervisor.run() == 0
    stops = [line.split("|")[1].strip() for line in lines if "| stopping " in line and "all" not in line]
    assert stops == ["stopping client", "stopping server"], lines


def test_children_stop_even_if_the_launcher_is_killed(tmp_path):
    """kill -9 (or the OOM killer) gives the launcher no chance to stop anything: each child is still told
    (SIGTERM from the kernel), so none runs on for good in its own session."""
    shell = start(tmp_path, pipe=None)
    pid, kids = 0, {}
    try:
        pid = launcher_pid(shell.pid)
        kids = live.wait_until(
            lambda: (k := children_of(pid)) and {"pool", "deaf", "leaky"} <= k.keys() and k,
            timeout=20,
            message="children started",
        )
        pool = live.wait_until(
            lambda: len(f := family({kids["pool"]})) >= 2 and f, timeout=20, message="pool"
        )
        os.kill(pid, signal.SIGKILL)
        # The well-behaved ones stop with what they started; "deaf" ignores SIGTERM by design.
        live.wait_until(
            lambda: not alive(pool | {kids["leaky"]}),
            timeout=60,  # generous: a loaded box delays the kernel-sent SIGTERM handlers (20 s was short)
            message="children stopped with the launcher",
        )
    finally:
        for pgid in {*(children_of(pid).values() if pid else ()), *kids.values()}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)


def test_blank_child_lines_are_not_echoed():
    """Celery prints empty lines around its shutdown notice; the console shows only lines with text."""
    code = "print(''); print('text', flush=True); print('   '); print('', flush=True)"
    lines: list[str] = []
    supervisor = launcher.Supervisor(
        [launcher.ProcessSpec("child", [live.PYTHON, "-c", code])], write=lines.append
    )
    supervisor._start(supervisor.children[0])
    supervisor.children[0].proc.wait(timeout=30)
    live.wait_until(lambda: any("text" in line for line in lines), timeout=10)
    time.sleep(0.2)
    assert [line for line in lines if "child |" in line] == [f"{'child':>10} | text\n"]
    assert supervisor.shutdown() == 0
