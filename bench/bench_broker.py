"""Celery broker benchmark: the embedded broker before issue 12 (kombu's filesystem transport), the embedded
broker now (core/broker.py: one SQLite file in WAL mode) and Redis, each under the same soak.

    .venv/bin/python bench/bench_broker.py [--tasks 3000] [--publishers 4] [--rate 10] [--brokers ...]

Both real workers start with the launcher's own arguments (``-Q default -c 2`` and ``-Q ml -c 1``); several
publisher processes send a cheap default-queue task and the collector's real ``ingest_market_data`` with
small packed batches (20 % of the tasks), paced at ``--rate`` tasks/s each. Printed per broker: tasks/s
(done / first publish to last result), publish -> done latency p50 / p99 (every result's ``date_done``),
tasks not done 3 minutes after the last publish (lost, or still queued), failed tasks, crashes (a worker
exited, or CRITICAL / Unrecoverable / WorkerLostError / a traceback in its log), CPU per task (publisher,
each worker with its pool), then a worker's idle CPU (the price of polling), and the ratios against the
filesystem transport measured in the same run. Runs on a throw-away SQLite database; Redis is skipped when
nothing answers on ``BENCH_REDIS_URL`` (default redis://127.0.0.1:6379, database 10, emptied first).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDIS_DB = 10
FS_SETTINGS = "tests.core.settings_filesystem_broker"
SETTINGS = {"filesystem": FS_SETTINGS, "filesystem-fast": FS_SETTINGS, "sqlite": "", "redis": ""}
LABELS = {
    "filesystem": "filesystem (before)",
    "filesystem-fast": "filesystem, 20 ms poll",
    "sqlite": "sqlite WAL (now)",
    "redis": "redis",
}


def idle_cpu(env: dict[str, str], work_dir: Path, seconds: float) -> dict[str, float]:
    """Per cent of one core each worker uses while no task arrives, measured once a warm-up task has gone
    through both (so start-up is not counted)."""
    import contextlib

    from tests import live
    from tests.core.broker_soak import _run_child, _worker_specs, process_tree_cpu_s

    work_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        procs = {
            name: stack.enter_context(live.running(list(spec.args), env={**env, **spec.env}))
            for name, spec in _worker_specs().items()
        }
        _run_child(["warmup"], env=env, log=work_dir / "idle-warmup.log", timeout=180)
        time.sleep(2)
        before, t0 = {n: process_tree_cpu_s(p.pid) for n, p in procs.items()}, time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        return {n: 100 * (process_tree_cpu_s(p.pid) - before[n]) / wall for n, p in procs.items()}


def _race_connection(kind: str, folder: str):  # noqa: ANN202 - a kombu Connection
    from kombu import Connection

    if kind == "sqlite":
        return Connection(f"sqlite:///{folder}/broker.sqlite", transport="core.broker:Transport")
    data = f"{folder}/data"
    options = {"data_folder_in": data, "data_folder_out": data, "control_folder": f"{folder}/control"}
    return Connection("filesystem://", transport_options=options)


def _race_publish(kind: str, folder: str, seconds: float, size: int) -> None:
    from kombu import Exchange, Queue

    queue = Queue("race", Exchange("race"), routing_key="race")
    body = {"pad": "x" * size}
    end = time.monotonic() + seconds
    with _race_connection(kind, folder) as conn, conn.Producer() as producer:
        while time.monotonic() < end:
            producer.publish(body, exchange=queue.exchange, routing_key="race", declare=[queue])


def _race_consume(kind: str, folder: str, seconds: float, out) -> None:  # noqa: ANN001
    from queue import Empty

    got = errors = 0
    first = ""
    end = time.monotonic() + seconds
    with _race_connection(kind, folder) as conn:
        channel = conn.default_channel
        while time.monotonic() < end:
            try:
                channel._get("race")  # noqa: SLF001 - what a worker's poll does, without Celery around it
                got += 1
            except Empty:
                pass
            except Exception as exc:  # noqa: BLE001 - the failure being counted
                errors += 1
                first = first or repr(exc)[:120]
    out.put((got, errors, first))


def race_probe(kind: str, seconds: float, size: int = 65536) -> tuple[int, int, str]:
    """Two publishers and two consumers on one queue, as fast as they go, for ``seconds``: messages taken,
    and reads that failed (for the filesystem transport: a reader that took a file its writer was still
    writing, the worker-killing JSONDecodeError of issue 12)."""
    import multiprocessing

    folder = tempfile.mkdtemp(prefix=f"race-{kind}-")
    for sub in ("data", "control"):
        Path(folder, sub).mkdir()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race_publish, args=(kind, folder, seconds, size)) for _ in range(2)]
    procs += [ctx.Process(target=_race_consume, args=(kind, folder, seconds, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in range(2)]
    for p in procs:
        p.join(timeout=60)
    return sum(r[0] for r in results), sum(r[1] for r in results), next((r[2] for r in results if r[2]), "")


def redis_available(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per broker (20 %% of them to ml)")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="tasks/s per publisher")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="0 skips the idle CPU figure")
    parser.add_argument("--brokers", default="filesystem,filesystem-fast,sqlite,redis")
    parser.add_argument("--race-seconds", type=float, default=20.0, help="0 skips the race probe")
    args = parser.parse_args()
    if args.race_seconds > 0:
        print(f"race probe: 2 publishers + 2 consumers of 64 KB messages, {args.race_seconds:g} s each")
        for kind in ("filesystem", "sqlite"):
            taken, errors, first = race_probe(kind, args.race_seconds)
            print(f"  {kind:<10} taken {taken:>6}  failed reads {errors:>4}  {first}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "observator.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'db.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
    import django

    django.setup()
    from django.core.management import call_command

    from core.broker import POLLING_INTERVAL_S
    from tests.core.broker_soak import private_redis_url, run_soak, soak_env

    call_command("migrate", verbosity=0)
    ml = args.tasks // 5
    results = {}
    idle = {}
    print(
        f"{args.tasks} tasks per broker ({args.tasks - ml} default, {ml} ml), {args.publishers} publishers "
        f"x {args.rate:g} tasks/s"
    )
    for name in [b for b in args.brokers.split(",") if b]:
        if name not in SETTINGS:
            print(f"{name}: unknown broker (choose from {', '.join(SETTINGS)})")
            continue
        url = ""
        if name == "redis":
            if not redis_available(redis_url):
                print(f"{LABELS[name]:<22} skipped: nothing answers on {redis_url}")
                continue
            url = private_redis_url(redis_url, REDIS_DB)
        env = soak_env(var_dir=tmp / name / "var", redis_url=url, settings_module=SETTINGS[name])
        if name == "filesystem-fast":  # the same polling as the SQLite broker: the race has more chances
            env["FILESYSTEM_BROKER_POLLING_INTERVAL"] = str(POLLING_INTERVAL_S)
        try:
            result = run_soak(
                broker=LABELS[name],
                env=env,
                work_dir=tmp / name / "soak",
                default_tasks=args.tasks - ml,
                ml_tasks=ml,
                publishers=args.publishers,
                rate=args.rate,
            )
        except Exception as exc:  # noqa: BLE001 - a broker that breaks is a result, not the end of the bench
            print(f"{LABELS[name]:<22} FAILED: {exc!r}"[:2000])
            continue
        results[name] = result
        print(result.summary(), flush=True)
        for line in result.crash_lines[:5]:
            print(f"    {line[:200]}")
        if args.idle_seconds > 0:
            idle[name] = idle_cpu(env, tmp / name / "idle", args.idle_seconds)
            shares = ", ".join(f"{n} {v:.1f} %" for n, v in idle[name].items())
            print(f"{LABELS[name]:<22} idle workers: {shares} of a core", flush=True)
    base = results.get("filesystem")
    if base is not None:
        for name, r in results.items():
            if name.startswith("filesystem"):
                continue
            print(
                f"{LABELS[name]} vs filesystem: tasks/s x{r.tasks_per_s / base.tasks_per_s:.2f}, "
                f"p50 x{base.percentile(50) / r.percentile(50):.2f} faster, "
                f"p99 x{base.percentile(99) / r.percentile(99):.2f} faster; "
                f"not done {r.lost} vs {base.lost}, "
                f"crashes {r.crashes} vs {base.crashes}"
            )


if __name__ == "__main__":
    main()
