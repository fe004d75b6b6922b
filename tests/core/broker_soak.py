"""Broker soak harness: the real Celery workers (started with the launcher's own arguments) under
thousands of tasks from several publisher processes at once; counts crashes, lost tasks and latency.

Used by ``tests/core/test_broker_soak.py`` (asserts 0 crashes, 0 lost) and ``bench/bench_broker.py``
(prints the figures per broker). A publisher is this module run as a script:
``python -m tests.core.broker_soak publish --default N --ml M --rate R --out FILE``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from tests import live

CHEAP_TASK = "celery.accumulate"  # Celery's built-in: returns its arguments; goes to the default queue
INGEST_TASK = "mlmodel.tasks.ingest_market_data"  # the collector's task, on the ml queue
MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP")
# A worker (or its pool) that died, or Celery's last words before it dies.
_CRASH = re.compile(r"CRITICAL|Unrecoverable error|WorkerLostError|exited with|Traceback", re.IGNORECASE)


@dataclass
class SoakResult:
    broker: str
    sent: dict[str, int]
    done: dict[str, int]
    failed: int
    crashes: int
    crash_lines: list[str]
    wall_s: float
    latency_ms: list[float] = field(default_factory=list)
    phases_s: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(self.sent.values()) - sum(self.done.values())

    @property
    def tasks_per_s(self) -> float:
        return sum(self.done.values()) / self.wall_s if self.wall_s else 0.0

    def percentile(self, q: float) -> float:
        values = sorted(self.latency_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]

    def summary(self) -> str:
        return (
            f"{self.broker:<22} sent {sum(self.sent.values()):>5} (default {self.sent['default']}, ml "
            f"{self.sent['ml']})  done {sum(self.done.values()):>5}  not done {self.lost}  "
            f"failed {self.failed}  crashes {self.crashes}  {self.tasks_per_s:7.1f} tasks/s  "
            f"publish->done p50 {self.percentile(50):7.1f} ms  p99 {self.percentile(99):8.1f} ms  "
            "CPU per task: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in self.cpu_ms_per_task.items())
            + "  ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases_s.items())
            + ")"
        )


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its direct children (a worker's pool), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def small_packed_batch(seq: int) -> dict[str, Any]:
    """A collector-like packed block: 3 markets, 2 books of 5 levels and 2 trades each, stamped now."""
    from market import batchwire

    now = int(time.time() * 1000)
    books: dict[str, list[tuple[int, list[tuple[float, float, float, float]]]]] = {}
    trades: dict[str, list[tuple[int, float, float, int]]] = {}
    for k, code in enumerate(MARKETS):
        mid = 1000.0 * (k + 1) + (seq % 7)
        levels = [(mid + 1 + i, mid - 1 - i, 1.0 + i, 1.5 + i) for i in range(5)]
        books[code] = [(now - 200, levels), (now, levels)]
        trades[code] = [(now - 100, mid, 0.5, 1), (now, mid, 0.25, -1)]
    return batchwire.encode(batchwire.pack(books, trades))


def publish_main(argv: list[str]) -> None:
    """One publisher process: ``--default`` cheap tasks and ``--ml`` ingest batches, interleaved, at
    ``--rate`` tasks/s; writes ``{task_id: [queue, sent_at_epoch_s]}`` to ``--out``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--default", type=int, required=True)
    parser.add_argument("--ml", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import django

    django.setup()
    from celery_app import app

    total = args.default + args.ml
    every_ml = total / args.ml if args.ml else float("inf")
    sent: dict[str, tuple[str, float]] = {}
    start = time.monotonic()
    cpu0 = time.process_time()
    n_ml = 0
    for i in range(total):
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        at = time.time()
        if n_ml < args.ml and i >= n_ml * every_ml:
            n_ml += 1
            # The collector's call (send_task by name, queue ml), keeping the result so it can be counted.
            r = app.send_task(
                INGEST_TASK, kwargs={"packed": small_packed_batch(i)}, queue="ml", ignore_result=False
            )
            sent[r.id] = ("ml", at)
        else:
            r = app.send_task(CHEAP_TASK, args=(i,))
            sent[r.id] = ("default", at)
    Path(args.out).write_text(json.dumps({"sent": sent, "cpu_s": time.process_time() - cpu0}))


def _worker_specs() -> dict[str, Any]:
    """The launcher's own process specs for the two workers (arguments and role environment)."""
    from core.launcher import build_specs

    specs, _ = build_specs(
        host="127.0.0.1",
        port=8000,
        simulate=False,
        sim_port=0,
        markets=list(MARKETS),
        available_commands=set(),
    )
    return {s.name: s for s in specs if s.name in ("worker", "ml")}


def _date_done_s(meta: dict[str, Any], tz: tzinfo) -> float | None:
    """``date_done`` as epoch seconds; a naive one (the database backend's) is in Celery's timezone."""
    done = meta.get("date_done")
    if done is None:
        return None
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=tz)
    return float(done.timestamp())


def warmup_main(argv: list[str]) -> None:
    """One task per queue through the running workers (so the figures are the steady state's)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    import django

    django.setup()
    from celery_app import app

    results = [
        app.send_task(CHEAP_TASK, args=(-1,)),
        app.send_task(INGEST_TASK, kwargs={"packed": small_packed_batch(0)}, queue="ml", ignore_result=False),
    ]
    deadline = time.monotonic() + args.timeout
    for r in results:
        while r.state != "SUCCESS":
            if time.monotonic() > deadline:
                sys.exit(f"workers did not run task {r.id} within {args.timeout}s (state {r.state})")
            time.sleep(0.2)


def collect_main(argv: list[str]) -> None:
    """Read the result of every task id in ``--ids`` until all are final or ``--timeout``; writes
    ``{task_id: [status, date_done_epoch_s]}`` (final ones only) to ``--out``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import django

    django.setup()
    from celery_app import app

    manager = getattr(app.backend, "session_manager", None)
    if manager is not None:  # the database backend: one engine for all reads, not one per read
        manager._after_fork()  # noqa: SLF001
    pending = set(json.loads(Path(args.ids).read_text()))
    final: dict[str, tuple[str, float | None]] = {}
    deadline = time.monotonic() + args.timeout
    while pending:
        for tid in list(pending):
            meta = app.backend.get_task_meta(tid)
            if meta.get("status") in ("SUCCESS", "FAILURE"):
                final[tid] = (str(meta["status"]), _date_done_s(meta, app.timezone))
                pending.discard(tid)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    Path(args.out).write_text(json.dumps(final))


def _run_child(args: list[str], *, env: dict[str, str], log: Path, timeout: float) -> None:
    with live.running([live.PYTHON, "-m", "tests.core.broker_soak", *args], env=env, log_path=log) as proc:
        rc = proc.wait(timeout=timeout)
    if rc != 0:
        raise RuntimeError(f"{args[0]} exited with {rc}:\n{log.read_text(errors='replace')[-3000:]}")


def run_soak(
    *,
    broker: str,
    env: dict[str, str],
    work_dir: Path,
    default_tasks: int,
    ml_tasks: int,
    publishers: int,
    rate: float,
    drain_timeout: float = 180.0,
) -> SoakResult:
    """Start both workers as the launcher does, warm them up, run ``publishers`` publisher processes
    (``rate`` tasks/s each, the tasks split evenly), wait for every result and read the workers' logs.

    Every Celery call happens in child processes started with ``env`` (settings module, database,
    broker): the product's own wiring, never this process's."""
    work_dir.mkdir(parents=True, exist_ok=True)
    specs = _worker_specs()
    logs = {name: work_dir / f"{name}.log" for name in specs}
    client_env = {**env, "OBSERVATOR_ROLE": "web"}
    sent: dict[str, tuple[str, float]] = {}
    publish_cpu = 0.0
    with contextlib.ExitStack() as stack:
        workers = {
            name: stack.enter_context(
                live.running(list(spec.args), env={**env, **spec.env}, log_path=logs[name], stop_timeout=20)
            )
            for name, spec in specs.items()
        }
        t0 = time.monotonic()
        _run_child(["warmup"], env=client_env, log=work_dir / "warmup.log", timeout=180)
        start = time.monotonic()
        cpu0 = {name: process_tree_cpu_s(proc.pid) for name, proc in workers.items()}
        pubs = []
        for k in range(publishers):
            out = work_dir / f"publisher-{k}.json"
            n_default = default_tasks // publishers + (1 if k < default_tasks % publishers else 0)
            n_ml = ml_tasks // publishers + (1 if k < ml_tasks % publishers else 0)
            args = [live.PYTHON, "-m", "tests.core.broker_soak", "publish"]
            args += ["--default", str(n_default), "--ml", str(n_ml), "--rate", str(rate), "--out", str(out)]
            log = work_dir / f"publisher-{k}.log"
            pubs.append((stack.enter_context(live.running(args, env=client_env, log_path=log)), out, log))
        for proc, out, log in pubs:
            rc = proc.wait(timeout=drain_timeout + (default_tasks + ml_tasks) / max(rate, 1e-9))
            if rc != 0:
                raise RuntimeError(f"publisher exited with {rc}:\n{log.read_text(errors='replace')[-3000:]}")
            report = json.loads(out.read_text())
            sent.update({k: (q, t) for k, (q, t) in report["sent"].items()})
            publish_cpu += report["cpu_s"]
        published = time.monotonic()
        ids = work_dir / "ids.json"
        ids.write_text(json.dumps(sorted(sent)))
        results_path = work_dir / "results.json"
        _run_child(
            ["collect", "--ids", str(ids), "--timeout", str(drain_timeout), "--out", str(results_path)],
            env=client_env,
            log=work_dir / "collect.log",
            timeout=drain_timeout + 120,
        )
        collected = time.monotonic()
        worker_cpu = {name: process_tree_cpu_s(proc.pid) - cpu0[name] for name, proc in workers.items()}
        elapsed = collected - start
        exits = [
            f"{name}: exited with {proc.returncode}"
            for name, proc in workers.items()
            if proc.poll() is not None
        ]
        # Stop them as the launcher does (SIGTERM to the worker, which stops its own pool): a clean
        # shutdown is part of the check, so its log lines are read too.
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in workers.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exits.append(f"{name}: did not stop within 30 s of SIGTERM")
        stopped = time.monotonic()
    final: dict[str, list[Any]] = json.loads(results_path.read_text())
    crash_lines = list(exits)
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        crash_lines += [f"{name}: {line}" for line in text.splitlines() if _CRASH.search(line)]
    done = {"default": 0, "ml": 0}
    latency: list[float] = []
    failed = 0
    for tid, (status, finished) in final.items():
        queue, at = sent[tid]
        if status != "SUCCESS":
            failed += 1
            continue
        done[queue] += 1
        if finished is not None:
            latency.append((finished - at) * 1000)
    first_sent = min((t for _, t in sent.values()), default=0.0)
    last_done = max((f for _, f in final.values() if f is not None), default=0.0)
    wall = last_done - first_sent if final and last_done > first_sent else elapsed
    return SoakResult(
        broker=broker,
        sent={q: sum(1 for qq, _ in sent.values() if qq == q) for q in ("default", "ml")},
        done=done,
        failed=failed,
        crashes=len(crash_lines),
        crash_lines=crash_lines,
        wall_s=wall,
        latency_ms=latency,
        cpu_ms_per_task={
            "publish": 1000 * publish_cpu / max(1, len(sent)),
            **{
                f"{q} worker": 1000 * worker_cpu[n] / max(1, done[q])
                for n, q in (("worker", "default"), ("ml", "ml"))
            },
        },
        phases_s={
            "start+warmup": start - t0,
            "publish": published - start,
            "collect": collected - published,
            "stop": stopped - collected,
        },
    )


def soak_env(*, var_dir: Path, redis_url: str = "", settings_module: str = "") -> dict[str, str]:
    """The children's environment for one soak: a private var/ (the embedded broker and results files),
    Redis when ``redis_url`` is given, no realtime relay to wait for."""
    extra = {
        "OBSERVATOR_VAR_DIR": str(var_dir),
        "REALTIME_RELAY_URL": "http://127.0.0.1:9/internal/realtime/",
        "TZ": "Asia/Seoul",
    }
    env = live.child_env(extra)
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def private_redis_url(url: str, db: int) -> str:
    """``url`` on database ``db``, emptied: no task of another test reaches these workers."""
    import redis

    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url.rstrip("/")
    private = f"{base}/{db}"
    client = redis.Redis.from_url(private)
    try:
        client.flushdb()
    finally:
        client.close()
    return private


_MODES = {"publish": publish_main, "warmup": warmup_main, "collect": collect_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in _MODES:
        sys.exit(f"usage: python -m tests.core.broker_soak {{{'|'.join(_MODES)}}} ...")
    _MODES[sys.argv[1]](sys.argv[2:])
