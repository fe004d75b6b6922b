"""Prometheus metrics for every process of the stack, and the heartbeats that tell an orchestrator each
process is alive (docs/ops/runbook.md).

Multiprocess: the launcher sets ``PROMETHEUS_MULTIPROC_DIR`` (``var/metrics/<port>``, emptied at start) for
all its children *before* they import prometheus-client, so counters and histograms written by a Celery
worker, the collector or another uvicorn process land in mmap files there and the web's ``/metrics`` sums
them (:func:`metrics_render`). Without the variable (tests, ``manage.py`` one-offs) each process counts on
its own registry.

Hot paths do no more than a dict update (:func:`collector_records`); the collector's housekeeping moves the
counts to Prometheus once a second (:func:`collector_observe`). Figures that live in the database or the
broker (queue depth, model age, last retrain, day uploads) are read when scraped (:class:`_StateCollector`).

Every call site is one line and never raises: a metrics failure must not stop trading or collecting.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from celery import signals
from django.apps import apps
from django.conf import settings
from django.db.models import Count
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from core.broker import broker_path, sqlite_connect

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NS = "observator"
F = TypeVar("F", bound=Callable[..., Any])

# A multiprocess folder that does not exist yet would make every metric below fail to open its file.
if os.environ.get(MULTIPROC_ENV):
    with contextlib.suppress(OSError):
        Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

# -- collector --------------------------------------------------------------------------------------
COLLECTOR_RECORDS = Counter(
    f"{NS}_collector_records", "Market-data records (books, trades, tickers) received, by market.", ["market"]
)
COLLECTOR_BYTES = Counter(
    f"{NS}_collector_bytes",
    "Bytes the collector appended to its day files (WAL record batches), by market.",
    ["market"],
)
COLLECTOR_RECORDS_BY_KIND = Counter(
    f"{NS}_collector_records_by_kind", "Records received by kind (duplicate: trades dropped).", ["kind"]
)
COLLECTOR_RECONNECTS = Counter(f"{NS}_collector_reconnects", "WebSocket reconnects of the collector.")
COLLECTOR_FRAMES = Counter(f"{NS}_collector_frames", "WebSocket frames the collector received.")
COLLECTOR_MALFORMED = Counter(f"{NS}_collector_malformed_frames", "Frames the collector could not parse.")
COLLECTOR_GAPS = Counter(
    f"{NS}_collector_gaps", "Gap rows written (holes in the data).", ["market", "reason"]
)
COLLECTOR_GAP_SECONDS = Counter(
    f"{NS}_collector_gap_seconds", "Seconds of market data missing, by gap rows.", ["market", "reason"]
)
COLLECTOR_MARKETS = Gauge(
    f"{NS}_collector_markets_owned",
    "Markets this collector process collects (its leases when sharded).",
    ["shard"],
    multiprocess_mode="livesum",
)
COLLECTOR_ROWS_DROPPED = Counter(f"{NS}_collector_rows_dropped", "Rows the day-file writer had to drop.")
COLLECTOR_LEASES_TAKEN = Counter(
    f"{NS}_collector_leases_taken",
    "Market leases a sharded collector took: takeover (the previous holder's lease lapsed: it died or "
    "was cut off), handover (released cleanly: rebalance or a clean stop).",
    ["reason"],
)
COLLECTOR_LEASES_DROPPED = Counter(
    f"{NS}_collector_leases_dropped",
    "Market leases a sharded collector let go: rebalance (planned), lost (lapsed or taken: Redis "
    "unreachable or the process stalled past the lease TTL).",
    ["reason"],
)

# -- fan-out to browsers (web) ----------------------------------------------------------------------
FANOUT_CLIENTS = Gauge(
    f"{NS}_fanout_clients", "Browser market subscriptions held by web processes.", multiprocess_mode="livesum"
)
FANOUT_LAG = Histogram(
    f"{NS}_fanout_lag_seconds",
    "Exchange timestamp of a market event to its frame offered to browsers (tick->browser lag).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)

# -- trading ----------------------------------------------------------------------------------------
ORDERS_PLACED = Counter(
    f"{NS}_orders_placed", "Orders placed (accepted by the exchange).", ["mode", "source"]
)
ORDERS_REJECTED = Counter(
    f"{NS}_orders_rejected", "Orders refused (validation, risk, funds, exchange), by error code.", ["reason"]
)
ORDER_ACK_SECONDS = Histogram(
    f"{NS}_order_ack_seconds", "order_place wall time: request to the exchange's answer.", ["mode"],
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
SCHEDULED_FIRE_DELAY = Histogram(
    f"{NS}_scheduled_order_fire_delay_seconds",
    "Time-triggered scheduled orders: seconds between trigger_at and firing.",
    buckets=_DELAY_BUCKETS,
)

# -- celery -----------------------------------------------------------------------------------------
TASK_FAILURES = Counter(f"{NS}_celery_task_failures", "Celery tasks that raised.", ["task"])
TASKS_SUCCEEDED = Counter(f"{NS}_celery_tasks_succeeded", "Celery tasks that finished.", ["task"])

# -- ml ---------------------------------------------------------------------------------------------
PREDICTION_SECONDS = Histogram(
    f"{NS}_prediction_seconds", "Serving: one ingest call (all markets of a batch).", buckets=_LATENCY_BUCKETS
)

# -- heartbeats -------------------------------------------------------------------------------------
ROLES = ("web", "worker", "ml", "beat", "collector")
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_MAX_AGE = 30.0


def _safe(fn: F) -> F:
    """Metrics never break the caller: log once per failure and go on."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001
            logger.debug("metrics: %s failed", fn.__name__, exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]


# -- multiprocess directory -------------------------------------------------------------------------
def metrics_dir_prepare(path: str | Path) -> Path:
    """Create ``path`` empty (the launcher, before it starts children): stale files of a previous run
    would add their counts to this one's."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.db"):
        with contextlib.suppress(OSError):
            old.unlink()
    return root


def mark_process_dead(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (a Celery pool child, a uvicorn worker)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid or os.getpid(), path)


# -- hot-path helpers -------------------------------------------------------------------------------
class _CollectorTally:
    __slots__ = (
        "bytes",
        "kinds",
        "last_flush",
        "last_frames",
        "last_malformed",
        "last_reconnects",
        "last_dropped",
        "n",
    )

    def __init__(self) -> None:
        self.n: collections.Counter[str] = collections.Counter()
        self.kinds: dict[str, int] = {}
        self.bytes: dict[str, int] = {}  # market -> the writer's bytes_by_market at the last flush
        self.last_flush = 0.0
        self.last_frames = self.last_malformed = self.last_reconnects = self.last_dropped = 0


_tally = _CollectorTally()
_code = operator.attrgetter("code")


def collector_records(records: list[Any]) -> None:
    """Count a batch of parsed records by market: one C-level counter update (flushed once a second).
    Kinds come from the collector's own counts (:func:`collector_observe`)."""
    try:
        _tally.n.update(map(_code, records))
    except Exception:  # noqa: BLE001
        logger.debug("metrics: collector_records failed", exc_info=True)


@_safe
def collector_gap(code: str, ts_start: int, ts_end: int, reason: str) -> None:
    COLLECTOR_GAPS.labels(code, reason).inc()
    COLLECTOR_GAP_SECONDS.labels(code, reason).inc(max(0, ts_end - ts_start) / 1000)


@_safe
def collector_observe(collector: Any, *, force: bool = False) -> None:
    """Called from the collector's housekeeping (10 a second): at most once a second, move the tallies
    to Prometheus, read the streamer's counters and touch the collector's heartbeat."""
    now = time.monotonic()
    if not force and now - _tally.last_flush < 1.0:
        return
    _tally.last_flush = now
    counts, _tally.n = _tally.n, collections.Counter()
    for code, value in counts.items():
        COLLECTOR_RECORDS.labels(code).inc(value)
    for kind, value in dict(getattr(collector, "counts", None) or {}).items():
        if kind in ("orderbook", "trade", "ticker", "duplicate") and value > _tally.kinds.get(kind, 0):
            COLLECTOR_RECORDS_BY_KIND.labels(kind).inc(value - _tally.kinds.get(kind, 0))
            _tally.kinds[kind] = value
    written = dict(getattr(getattr(collector, "writer", None), "bytes_by_market", None) or {})
    for code, value in written.items():
        if value > _tally.bytes.get(code, 0):
            COLLECTOR_BYTES.labels(code).inc(value - _tally.bytes.get(code, 0))
        _tally.bytes[code] = value
    stats = getattr(getattr(collector, "streamer", None), "stats", None)
    for attr, metric, last in (
        ("frames", COLLECTOR_FRAMES, "last_frames"),
        ("malformed", COLLECTOR_MALFORMED, "last_malformed"),
        ("reconnects", COLLECTOR_RECONNECTS, "last_reconnects"),
    ):
        value = int(getattr(stats, attr, 0) or 0)
        if value > getattr(_tally, last):
            metric.inc(value - getattr(_tally, last))
        setattr(_tally, last, value)
    dropped = int(getattr(getattr(collector, "writer", None), "rows_dropped", 0) or 0)
    if dropped > _tally.last_dropped:
        COLLECTOR_ROWS_DROPPED.inc(dropped - _tally.last_dropped)
    _tally.last_dropped = dropped
    owned = getattr(collector, "owned", None)
    if owned is None:
        owned = getattr(collector, "codes", ())
    COLLECTOR_MARKETS.labels(os.environ.get("COLLECTOR_SHARD", "0")).set(len(owned))
    heartbeat("collector")


@_safe
def collector_lease_taken(reason: str) -> None:
    COLLECTOR_LEASES_TAKEN.labels(reason).inc()


@_safe
def collector_lease_dropped(count: int, *, lost: bool) -> None:
    COLLECTOR_LEASES_DROPPED.labels("lost" if lost else "rebalance").inc(count)


@_safe
def fanout_clients(count: int) -> None:
    FANOUT_CLIENTS.set(count)


@_safe
def fanout_lag(kind: str, data: dict[str, Any]) -> None:
    """Lag of one event offered to browsers: now minus the exchange's timestamp (ms) of the event."""
    ts = data.get("ts") or data.get("timestamp")
    trades = data.get("trades")
    if ts is None and isinstance(trades, list) and trades and isinstance(trades[-1], dict):
        ts = trades[-1].get("ts")
    if isinstance(ts, int | float) and ts > 0:
        FANOUT_LAG.labels(kind).observe(max(0.0, time.time() - ts / 1000))


def order_place_observed(fn: F) -> F:
    """Decorate ``order_place``: placed / rejected-by-code counts and the ack latency."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            order = fn(*args, **kwargs)
        except Exception as exc:
            with contextlib.suppress(Exception):
                ORDERS_REJECTED.labels(str(getattr(exc, "code", None) or type(exc).__name__)).inc()
            raise
        with contextlib.suppress(Exception):
            mode = str(getattr(order, "mode", "") or "")
            ORDER_ACK_SECONDS.labels(mode).observe(time.perf_counter() - start)
            if getattr(order, "state", "") == "rejected":
                ORDERS_REJECTED.labels(str(getattr(order, "error_code", "") or "rejected")).inc()
            else:
                ORDERS_PLACED.labels(mode, str(getattr(order, "source", "") or "")).inc()
        return order

    return wrapper  # type: ignore[return-value]


@_safe
def scheduled_fire_delay(so: Any, now: Any) -> None:
    trigger_at = getattr(so, "trigger_at", None)
    if trigger_at is not None:
        SCHEDULED_FIRE_DELAY.observe(max(0.0, (now - trigger_at).total_seconds()))


def timed(metric: Histogram) -> Callable[[F], F]:
    """Decorator: observe the wall time of each call in ``metric``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with contextlib.suppress(Exception):
                    metric.observe(time.perf_counter() - start)

        return wrapper  # type: ignore[return-value]

    return decorate


# -- celery signals ---------------------------------------------------------------------------------
def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or sender or "unknown")


def celery_signals_connect() -> None:
    """Task outcomes, heartbeats for workers and beat, dead pool children's gauges dropped."""

    def on_failure(sender: Any = None, **_: Any) -> None:
        with contextlib.suppress(Exception):
            TASK_FAILURES.labels(_task_name(sender)).inc()

    def on_success(sender: Any = None, **_: Any) -> None:
        with contextlib.suppress(Exception):
            TASKS_SUCCEEDED.labels(_task_name(sender)).inc()

    def on_worker_ready(sender: Any = None, **_: Any) -> None:
        queues = set()
        with contextlib.suppress(Exception):
            queues = {q.name for q in sender.app.amqp.queues.consume_from.values()}
        heartbeat_thread_start("ml" if queues == {"ml"} else "worker")

    def on_beat_init(**_: Any) -> None:
        heartbeat_thread_start("beat")

    def on_child_shutdown(pid: int | None = None, **_: Any) -> None:
        mark_process_dead(pid)

    signals.task_failure.connect(on_failure, weak=False)
    signals.task_success.connect(on_success, weak=False)
    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.beat_init.connect(on_beat_init, weak=False)
    signals.worker_process_shutdown.connect(on_child_shutdown, weak=False)


# -- heartbeats -------------------------------------------------------------------------------------
def heartbeat_dir() -> Path:
    return Path(settings.HEALTH_DIR)


_last_beat: dict[str, float] = {}


@_safe
def heartbeat(role: str, *, force: bool = False) -> None:
    """Touch ``<health dir>/<role>-<host>-<pid>.json`` (at most every HEARTBEAT_INTERVAL seconds)."""
    now = time.monotonic()
    if not force and now - _last_beat.get(role, -1e9) < HEARTBEAT_INTERVAL:
        return
    _last_beat[role] = now
    root = heartbeat_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{role}-{socket.gethostname()}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"role": role, "pid": os.getpid(), "host": socket.gethostname(), "ts": time.time()})
    )
    tmp.replace(path)


def heartbeat_thread_start(role: str, interval: float = HEARTBEAT_INTERVAL) -> threading.Thread:
    """A daemon thread beating for ``role`` (Celery workers and beat: their main loop is not ours)."""

    def run() -> None:
        while True:
            heartbeat(role, force=True)
            time.sleep(interval)

    thread = threading.Thread(target=run, name=f"heartbeat-{role}", daemon=True)
    thread.start()
    return thread


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def health_check(*, role: str, max_age: float = HEARTBEAT_MAX_AGE, host: str | None = None) -> dict[str, Any]:
    """Liveness of ``role`` on ``host`` (default: this host): the fresh heartbeats of its live processes.
    ``ok`` when at least one is younger than ``max_age`` seconds."""
    host = host or socket.gethostname()
    now = time.time()
    fresh: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for path in sorted(heartbeat_dir().glob(f"{role}-{host}-*.json")):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        age = now - float(beat.get("ts", 0))
        entry = {"pid": beat.get("pid"), "age_s": round(age, 1)}
        alive = host != socket.gethostname() or _pid_alive(int(beat.get("pid", 0)))
        (fresh if age <= max_age and alive else stale).append(entry)
    return {"role": role, "host": host, "ok": bool(fresh), "fresh": fresh, "stale": stale}


# -- scrape-time state ------------------------------------------------------------------------------
def queue_depths() -> dict[str, int]:
    """Messages waiting per Celery queue: Redis LLEN, or a count in the embedded SQLite broker."""

    queues = ("default", "ml")
    url = str(settings.CELERY_BROKER_URL or "")
    if url.startswith(("redis://", "rediss://")):
        import redis  # an optional dependency: only with a Redis broker

        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            return {q: int(client.llen(q)) for q in queues}
        finally:
            client.close()
    if url.startswith("sqlite:///"):
        path = broker_path(url)
        if not Path(path).exists():
            return dict.fromkeys(queues, 0)
        db = sqlite_connect(path)
        try:
            rows = dict(db.execute("SELECT queue, COUNT(*) FROM message GROUP BY queue").fetchall())
        finally:
            db.close()
        return {q: int(rows.get(q, 0)) for q in queues}
    return {}


class _StateCollector:
    """Figures read at scrape time from the broker and the database."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            f"{NS}_celery_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        with contextlib.suppress(Exception):
            for queue, n in queue_depths().items():
                depth.add_metric([queue], n)
        yield depth
        yield from self._ml()
        yield from self._uploads()

    def _ml(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            f"{NS}_model_age_seconds", "Age of the active model serving a market.", labels=["market"]
        )
        last = GaugeMetricFamily(
            f"{NS}_retrain_last_success",
            "Last finished training run per market: 1 succeeded, 0 failed.",
            labels=["market"],
        )
        last_ts = GaugeMetricFamily(
            f"{NS}_retrain_last_finished_timestamp",
            "When the last training run per market ended.",
            labels=["market"],
        )
        with contextlib.suppress(Exception):
            for market, created in _active_models():
                age.add_metric([market], max(0.0, time.time() - created))
            for market, ok, finished in _last_runs():
                last.add_metric([market], 1.0 if ok else 0.0)
                last_ts.add_metric([market], finished)
        yield age
        yield last
        yield last_ts

    def _uploads(self) -> Iterator[GaugeMetricFamily]:
        uploads = GaugeMetricFamily(f"{NS}_day_uploads", "Day-file uploads by status.", labels=["status"])
        with contextlib.suppress(Exception):
            for row in _model("market", "DayUpload").objects.values("status").annotate(n=Count("id")):
                uploads.add_metric([str(row["status"])], row["n"])
        yield uploads


def _model(app: str, name: str) -> Any:
    """Higher apps' models by name: core imports none of them (dependencies point one way)."""

    return apps.get_model(app, name)


def _active_models() -> list[tuple[str, float]]:
    rows = (
        _model("mlmodel", "ModelVersion").objects.filter(status="active").values_list("market", "created_at")
    )
    return [(market, created.timestamp()) for market, created in rows[:5000]]


def _last_runs() -> list[tuple[str, bool, float]]:
    done = ("succeeded", "failed")
    seen: dict[str, tuple[bool, float]] = {}
    rows = (
        _model("mlmodel", "TrainingRun")
        .objects.filter(state__in=done)
        .exclude(finished_at=None)
        .order_by("-finished_at")
    )
    for market, state, finished in rows.values_list("market", "state", "finished_at")[:5000]:
        if market not in seen:
            seen[market] = (state == "succeeded", finished.timestamp())
    return [(market, ok, ts) for market, (ok, ts) in seen.items()]


def live_gauges_reap(path: str | Path) -> list[int]:
    """Drop the live gauges (``gauge_live*_<pid>.db``) of processes that are gone: a SIGKILLed collector
    must stop counting its markets as owned. The folder is per host, so the pids are this host's."""
    dead: set[int] = set()
    for file in Path(path).glob("gauge_live*_*.db"):
        tail = file.stem.rsplit("_", 1)[-1]
        if tail.isdigit() and not _pid_alive(int(tail)):
            dead.add(int(tail))
    for pid in dead:
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid, str(path))
    return sorted(dead)


def metrics_render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics``: every process's values (multiprocess) plus the scrape-time
    state."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and Path(path).is_dir():
        live_gauges_reap(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(_StateCollector())
    return generate_latest(registry) + generate_latest(state), CONTENT_TYPE_LATEST
