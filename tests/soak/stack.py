"""The stack exactly as a person starts it (``python3 dev.py run --demo``), watched from outside: its console,
its process tree, the simulator's book, its database. Shared by tests/soak and bench/bench_stack_hour.py.

No Django here: the harness reads what an operator could read (the console, /proc, REST, the SQLite file).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from market.upbit.protocol import krw_tick_size_float

ROOT = Path(__file__).resolve().parents[2]
MARKET = "KRW-BTC"  # the default MARKET_CODES
TARGET_VOL = 0.00045  # the simulator's documented default one-minute volatility of the mid
# One-minute volatility of KRW-BTC by the simulator's signal strength (docs/simulator.md: the demo's announced
# jumps, strength 1, make the market about twelve times as volatile as the target; 3 seeds x 6 h pooled).
CALIBRATED_VOL = {0.0: TARGET_VOL, 0.5: 0.0027, 1.0: 0.0053}
ADMIN_USER = "soakadmin"
ADMIN_PASSWORD = "S0ak-admin-pass!"
# A port nothing listens on: the outside services (other exchanges, FX, news) fail fast, as offline.
DEAD_URL = "http://127.0.0.1:9"
RESTART_RE = re.compile(r"exited with .*restarting")
ERROR_RE = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback \(most recent call last\)")


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ processes (/proc)


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot: (pid, start) names a process even after its pid is reused
    name: str


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, session id, start time, state) from /proc/<pid>/stat, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(rest[1]), int(rest[3]), int(rest[19]), rest[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root_pid: int) -> list[Proc]:
    """Every live process under ``root_pid`` (children, grandchildren, ...) and every one in its session."""
    table: dict[int, tuple[int, int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[3] != "Z":
            table[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    found |= {pid for pid, st in table.items() if st[1] == root_pid and pid != root_pid}
    return [Proc(pid, table[pid][2], role(_cmdline(pid))) for pid in sorted(found)]


def alive(proc: Proc) -> bool:
    st = _stat(proc.pid)
    return st is not None and st[2] == proc.start and st[3] != "Z"


def role(cmdline: str) -> str:
    """Which part of the stack a command line is (the launcher's names)."""
    for needle, name in (
        ("upbit_sim", "simulator"),
        ("uvicorn", "web"),
        ("-Q default", "worker"),
        ("-Q ml", "ml"),
        (" beat", "beat"),
        (" collect", "collector"),
        (" train", "training"),  # the ml worker's detached training process
        ("runstack", "launcher"),
    ):
        if needle in cmdline:
            return name
    return cmdline.split(" ")[0].rsplit("/", 1)[-1] or "?"


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------------------------------ the book


@dataclass
class BookSample:
    wall: float
    ts_ms: int  # simulated exchange time
    bid: float
    ask: float

    @property
    def spread_ticks(self) -> float:
        return (self.ask - self.bid) / krw_tick_size_float(self.bid)

    @property
    def mid(self) -> float:
        return (self.ask + self.bid) / 2


def one_minute_vol(samples: list[BookSample]) -> float | None:
    """Std of one-minute log returns of the mid (simulated minutes: the last sample in each minute)."""
    import math

    last: dict[int, float] = {}
    for s in samples:
        last[s.ts_ms // 60_000] = s.mid
    minutes = sorted(last)
    returns = [math.log(last[b] / last[a]) for a, b in zip(minutes, minutes[1:], strict=False) if b == a + 1]
    return statistics.pstdev(returns) if len(returns) >= 10 else None


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class StackRun:
    """One ``dev.py run --demo`` in a private var/ folder and session, with its console in ``log_path``."""

    workdir: Path
    port: int
    sim_port: int
    speed: float
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_wall: float = 0.0
    ready_wall: float = 0.0
    ready_line: int = 0  # console lines before the stack answered (start-up chatter)
    stopped_wall: float | None = None
    signal_strength: float | None = None
    seen: dict[tuple[int, int], Proc] = field(default_factory=dict)
    rss: dict[tuple[int, int], list[tuple[float, int]]] = field(default_factory=dict)  # (wall, KiB) samples
    books: list[BookSample] = field(default_factory=list)
    book_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "var" / "db.sqlite3"

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []

    def tail(self, n: int = 60) -> str:
        return "\n".join(line[:300] for line in self.lines()[-n:])

    # ------------------------------------------------------------------ start / watch / stop

    def start(self, *, timeout: float = 400.0) -> None:
        python3 = shutil.which("python3") or sys.executable
        args = [
            python3,
            "dev.py",
            "run",
            "--demo",
            "--port",
            str(self.port),
            "--sim-port",
            str(self.sim_port),
            "--speed",
            f"{self.speed:g}",
        ]
        self.started_wall = time.monotonic()
        with open(self.log_path, "wb") as out:
            # Its own session and process group, as a terminal gives a foreground job: SIGINT to the group
            # is exactly what Ctrl-C does.
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev.py run exited with {self.proc.returncode}:\n{self.tail()}")
            if self._answers(f"{self.base_url}/login") and self._answers(f"{self.sim_url}/v1/market/all"):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"the stack did not answer within {timeout}s:\n{self.tail()}")
        self.ready_wall = time.monotonic()
        self.ready_line = len(self.lines())
        self.expected_vol()  # the simulator's signal strength, read while it is fresh
        self._thread = threading.Thread(target=self._watch, name="soak-watch", daemon=True)
        self._thread.start()

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _watch(self) -> None:
        """Every half second: the simulator's best bid/ask; every few seconds: the process tree and RSS."""
        assert self.proc is not None
        next_tree = 0.0
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                now = time.monotonic()
                try:
                    book = client.get(f"{self.sim_url}/v1/orderbook", params={"markets": MARKET}).json()[0]
                    unit = book["orderbook_units"][0]
                    self.books.append(
                        BookSample(now, int(book["timestamp"]), unit["bid_price"], unit["ask_price"])
                    )
                except (httpx.HTTPError, KeyError, IndexError, ValueError):
                    self.book_errors += 1
                if now >= next_tree:
                    next_tree = now + 3.0
                    for p in descendants(self.proc.pid):
                        key = (p.pid, p.start)
                        self.seen.setdefault(key, p)
                        rss = rss_kib(p.pid)
                        if rss:
                            self.rss.setdefault(key, []).append((now, rss))
                self._stop.wait(0.5)

    def expected_vol(self) -> float | None:
        """The calibrated one-minute volatility for the simulator's signal strength (``GET /_sim/state``);
        None for a strength without a documented figure."""
        if self.signal_strength is None:
            for _ in range(5):  # a busy simulator may time out once
                try:
                    state = httpx.get(f"{self.sim_url}/_sim/state", timeout=10).json()
                except (httpx.HTTPError, ValueError):
                    time.sleep(1)
                    continue
                self.signal_strength = float(state.get("signal_strength") or 0.0)
                break
        return None if self.signal_strength is None else CALIBRATED_VOL.get(self.signal_strength)

    def sim_elapsed_s(self) -> float:
        """Simulated seconds covered by the book samples so far."""
        if len(self.books) < 2:
            return 0.0
        return (self.books[-1].ts_ms - self.books[0].ts_ms) / 1000

    def stop(self, *, sig: int = signal.SIGINT, timeout: float = 60.0) -> StopResult:
        """Send ``sig`` to the process group (Ctrl-C), wait for the launcher, then look for survivors."""
        assert self.proc is not None
        self.stopped_wall = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for p in descendants(self.proc.pid):
            self.seen.setdefault((p.pid, p.start), p)
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            rc: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        launcher_s = time.monotonic() - t0
        at_exit = [p for p in self.seen.values() if alive(p)]
        time.sleep(1.0)
        survivors = [p for p in self.seen.values() if alive(p)]
        for p in survivors:  # never leave anything behind, whatever the assertion says
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        return StopResult(rc, launcher_s, at_exit, survivors, len(self.seen))

    # ------------------------------------------------------------------ figures

    def console_figures(self, until_wall: float | None = None) -> ConsoleFigures:
        lines = self.lines()
        after = lines[self.ready_line :]
        minutes = max(1e-9, ((until_wall or time.monotonic()) - self.ready_wall) / 60)
        return ConsoleFigures(
            lines_total=len(lines),
            startup_lines=self.ready_line,
            lines_after_ready=len(after),
            lines_per_min=len(after) / minutes,
            bytes_total=self.log_path.stat().st_size if self.log_path.exists() else 0,
            restarts=[line for line in lines if RESTART_RE.search(line)],
            errors=[line[:300] for line in lines if ERROR_RE.search(line)],
        )

    def book_figures(self) -> BookFigures:
        spreads = [s.spread_ticks for s in self.books]
        n = len(self.books)
        first = [s.spread_ticks for s in self.books[: max(1, n // 6)]]
        last = [s.spread_ticks for s in self.books[-max(1, n // 6) :]]
        return BookFigures(
            samples=n,
            sim_hours=self.sim_elapsed_s() / 3600,
            spread_median=quantile(spreads, 0.5),
            spread_p99=quantile(spreads, 0.99),
            spread_max=max(spreads) if spreads else float("nan"),
            spread_first_sixth=quantile(first, 0.5),
            spread_last_sixth=quantile(last, 0.5),
            vol=one_minute_vol(self.books),
        )

    def rss_figures(self, *, warm_up: float = 1 / 6) -> dict[str, tuple[int, int]]:
        """Per role: RSS in KiB once warmed up (the first sample after ``warm_up`` of the run: models and
        libraries loaded) and at the end, summed over that role's processes."""
        end = self.stopped_wall or time.monotonic()
        after = self.ready_wall + warm_up * (end - self.ready_wall)
        out: dict[str, tuple[int, int]] = {}
        for key, series in self.rss.items():
            warm = next((kib for t, kib in series if t >= after), series[-1][1])
            a, b = out.get(self.seen[key].name, (0, 0))
            out[self.seen[key].name] = (a + warm, b + series[-1][1])
        return out

    def db_rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Read the stack's own SQLite database (read-only)."""
        if not self.db_path.exists():
            return []
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


@dataclass
class StopResult:
    returncode: int | None
    launcher_s: float
    alive_at_launcher_exit: list[Proc]
    survivors: list[Proc]
    processes_seen: int


@dataclass
class ConsoleFigures:
    lines_total: int
    startup_lines: int
    lines_after_ready: int
    lines_per_min: float
    bytes_total: int
    restarts: list[str]
    errors: list[str]


@dataclass
class BookFigures:
    samples: int
    sim_hours: float
    spread_median: float
    spread_p99: float
    spread_max: float
    spread_first_sixth: float
    spread_last_sixth: float
    vol: float | None


def stack_env(workdir: Path, *, redis_url: str | None = None) -> dict[str, str]:
    """The environment of a person's shell: nothing of the test run (settings module, test database, keys),
    a private var/ folder, the first admin from DJANGO_SUPERUSER_*, and the outside services unreachable."""
    drop = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")
    env = {
        k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("PYTEST", "DJANGO_ALLOW"))
    }
    env.update(
        {
            "OBSERVATOR_VAR_DIR": str(workdir / "var"),
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": f"{ADMIN_USER}@example.com",
            "BITFLYER_API_URL": DEAD_URL,
            "BINANCE_API_URL": DEAD_URL,
            "OKX_API_URL": DEAD_URL,
            "FX_SOURCE_URL": DEAD_URL,
            "NEWS_FEEDS": DEAD_URL + "/feed.xml",
            "FEEDS_HTTP_TIMEOUT": "0.5",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def private_redis(url: str, db: int) -> str:
    """``url`` on Redis database ``db``, emptied: no task or event of another run reaches this stack."""
    from urllib.parse import urlsplit, urlunsplit

    import redis

    parts = urlsplit(url)
    private = urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))
    client = redis.Redis.from_url(private)
    try:
        client.flushdb()
    finally:
        client.close()
    return private


@contextlib.contextmanager
def running_stack(workdir: Path, *, speed: float, redis_url: str | None = None) -> Iterator[StackRun]:
    """Start the stack; on the way out (also on failure) Ctrl-C it and kill anything left."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = StackRun(
        workdir=workdir,
        port=free_port(),
        sim_port=free_port(),
        speed=speed,
        env=stack_env(workdir, redis_url=redis_url),
        log_path=workdir / "console.log",
    )
    try:
        run.start()
        yield run
    finally:
        if run.proc is not None and run.proc.poll() is None:
            run.stop()
