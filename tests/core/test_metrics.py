"""/metrics, /readyz and `manage.py health`: the named metrics after a collector message and a task
failure written by another process (multiprocess mode), liveness per role (core/metrics.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from market.collector import Collector
from market.upbit.records import TradeRecord

ROOT = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def scrape(client, **extra) -> str:
    answer = client.get("/metrics", **extra)
    assert answer.status_code == 200, answer.content[:200]
    return answer.content.decode()


@pytest.mark.django_db
def test_collector_records_and_gaps_show_up(client, tmp_path):
    before = scrape(client)
    collector = Collector(codes=["KRW-MET"], ws_url="ws://127.0.0.1:9/none", data_dir=tmp_path)
    now = int(time.time() * 1000)
    collector.handle_records(
        [
            TradeRecord("KRW-MET", now, now, 100.0, 1.0, 1, 1),
            TradeRecord("KRW-MET", now, now, 101.0, 1.0, -1, 2),
        ]
    )
    collector.handle_gap("KRW-MET", now - 4000, now, "reconnect", "test")
    collector.writer.flush()
    written = collector.writer.bytes_by_market["KRW-MET"]
    metrics.collector_observe(collector, force=True)
    text = scrape(client)
    wal = "observator_collector_bytes_total"
    assert written > 0
    assert sample(text, wal, market="KRW-MET") - sample(before, wal, market="KRW-MET") == written
    name = "observator_collector_records_total"
    assert sample(text, name, market="KRW-MET") - sample(before, name, market="KRW-MET") == 2
    kind = "observator_collector_records_by_kind_total"
    assert sample(text, kind, kind="trade") - sample(before, kind, kind="trade") == 2
    gap = "observator_collector_gap_seconds_total"
    assert sample(text, gap, market="KRW-MET", reason="reconnect") == pytest.approx(4.0)
    assert sample(text, "observator_collector_markets_owned", shard="0") == 1
    for family in ("observator_celery_queue_depth", "observator_day_uploads", "observator_model_age_seconds"):
        assert f"# TYPE {family} gauge" in text


def test_metrics_refuses_remote_peers_without_the_token(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.METRICS_TOKEN = "s3cret-token"
    assert (
        client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    )
    ok = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200


_FAILING_TASK = """
import django, os
django.setup()
from celery_app import app
app.conf.task_always_eager = True
app.conf.task_eager_propagates = False

@app.task(name="tests.metrics.boom")
def boom():
    raise RuntimeError("boom")

boom.apply()
print("applied")
"""


@pytest.mark.django_db
def test_task_failure_in_another_process_shows_in_the_web_metrics(client, tmp_path, monkeypatch):
    """Multiprocess: a Celery task failing in a child process (its own PROMETHEUS_MULTIPROC_DIR files)
    is counted by this process's /metrics."""
    mp = metrics.metrics_dir_prepare(tmp_path / "mp")
    env = {**os.environ, metrics.MULTIPROC_ENV: str(mp), "DJANGO_SETTINGS_MODULE": "observator.settings.test"}
    done = subprocess.run(
        [sys.executable, "-c", _FAILING_TASK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert "applied" in done.stdout, done.stderr[-2000:]
    assert list(mp.glob("counter_*.db")), "the child wrote no multiprocess files"
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mp))
    text = scrape(client)
    assert sample(text, "observator_celery_task_failures_total", task="tests.metrics.boom") == 1


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_channel_layer(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"] == ["cache", "channel_layer", "database"]


@pytest.mark.django_db
def test_readyz_names_what_failed(client, monkeypatch):
    from core import ops_views

    def broken() -> None:
        raise ConnectionError("down")

    monkeypatch.setattr(ops_views, "_check_cache", broken)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "failed": {"cache": "ConnectionError"}}


def _health(role: str, capsys, **opts) -> tuple[int, dict]:
    with pytest.raises(SystemExit) as exit_:
        call_command("health", role=role, **opts)
    return exit_.value.code, json.loads(capsys.readouterr().out)


def test_health_answers_per_role(settings, tmp_path, capsys):
    settings.HEALTH_DIR = tmp_path / "health"
    metrics._last_beat.clear()
    for role in metrics.ROLES:
        code, _ = _health(role, capsys)
        assert code == 1, role  # nothing beat yet
    metrics.heartbeat("collector")
    metrics.heartbeat_thread_start("beat", interval=60)
    deadline = time.monotonic() + 10
    while not list((tmp_path / "health").glob("beat-*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    code, body = _health("collector", capsys)
    assert code == 0 and body["fresh"][0]["pid"] == os.getpid()
    assert _health("beat", capsys)[0] == 0
    assert _health("worker", capsys)[0] == 1  # another role's heartbeat says nothing about workers
    # A stale heartbeat is not alive.
    beat = next((tmp_path / "health").glob("collector-*.json"))
    data = json.loads(beat.read_text())
    beat.write_text(json.dumps({**data, "ts": data["ts"] - 120}))
    code, body = _health("collector", capsys)
    assert code == 1 and body["stale"]


def test_health_of_a_dead_process_is_not_alive(settings, tmp_path, capsys):
    settings.HEALTH_DIR = tmp_path / "health"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (tmp_path / "health").mkdir()
    import socket

    (tmp_path / "health" / f"worker-{socket.gethostname()}-{child.pid}.json").write_text(
        json.dumps({"role": "worker", "pid": child.pid, "ts": time.time()})
    )
    assert _health("worker", capsys)[0] == 1


def test_launcher_gives_every_child_one_multiprocess_dir(tmp_path):
    from core import launcher

    specs, shared = launcher.build_specs(
        host="127.0.0.1", port=8123, simulate=False, sim_port=1, markets=["KRW-BTC"], available_commands=set()
    )
    path = shared["PROMETHEUS_MULTIPROC_DIR"]
    assert path.endswith(os.path.join("metrics", "8123"))
    assert all(spec.env["PROMETHEUS_MULTIPROC_DIR"] == path for spec in specs)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "counter_1.db").write_bytes(b"x")
    assert not list(metrics.metrics_dir_prepare(tmp_path / "m").iterdir())


@pytest.mark.django_db
def test_fanout_clients_and_tick_to_browser_lag(client):
    import asyncio

    from market.hub import MarketHub

    class Sub:
        def __init__(self) -> None:
            self.frames: list[str] = []

        def offer(self, kind: str, frame: str) -> None:
            self.frames.append(frame)

    before = scrape(client)
    hub, sub = MarketHub(), Sub()
    hub.layer = None  # no channel layer receiver: only the local bookkeeping
    asyncio.run(hub.subscribe("KRW-LAG", sub))
    assert sample(scrape(client), "observator_fanout_clients") == hub.subscriber_count() == 1
    ts = int(time.time() * 1000) - 250
    hub.dispatch(
        "KRW-LAG", {"type": "market.ticker", "data": {"market": "KRW-LAG", "ts": ts, "trade_price": 1}}
    )
    assert sub.frames
    text = scrape(client)
    count = "observator_fanout_lag_seconds_count"
    assert sample(text, count, kind="ticker") - sample(before, count, kind="ticker") == 1
    lag = sample(text, "observator_fanout_lag_seconds_sum", kind="ticker") - sample(
        before, "observator_fanout_lag_seconds_sum", kind="ticker"
    )
    assert lag >= 0.25
    asyncio.run(hub.unsubscribe("KRW-LAG", sub))
    assert sample(scrape(client), "observator_fanout_clients") == 0


def _defined_names() -> set[str]:
    """Every metric family name /metrics can show: the registered ones and the scrape-time ones."""
    from prometheus_client import REGISTRY

    names = {m.name for m in REGISTRY.collect()}
    names |= {m.name for m in metrics._StateCollector().collect()}
    return names


@pytest.mark.django_db
@pytest.mark.parametrize("doc", ["grafana-observator.json", "prometheus-alerts.yml"])
def test_dashboard_and_alerts_use_only_defined_metrics(doc):
    import re

    text = (ROOT / "docs" / "ops" / doc).read_text()
    used = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in re.findall(r"observator_[a-z_]+", text)}
    used -= {"observator_ops"}  # the dashboard uid
    assert used, doc
    assert used <= _defined_names(), used - _defined_names()
    if doc.endswith(".json"):
        json.loads(text)
    runbook = (ROOT / "docs" / "ops" / "runbook.md").read_text()
    for alert in re.findall(r"- alert: (\w+)", text):
        assert f"### {alert}" in runbook, alert


@pytest.mark.django_db(transaction=True)
def test_real_worker_failure_and_heartbeat(client, redis_url, tmp_path, monkeypatch, settings, capsys):
    """A real Celery worker (prefork child) writes its task failure to the shared multiprocess folder and
    this process's /metrics shows it; the worker's heartbeat makes `health --role worker` answer 0."""
    from tests import live

    mp = metrics.metrics_dir_prepare(tmp_path / "mp")
    var = tmp_path / "var"
    settings.HEALTH_DIR = var / "health"
    env = live.child_env(
        {"OBSERVATOR_ROLE": "worker", metrics.MULTIPROC_ENV: str(mp), "OBSERVATOR_VAR_DIR": str(var)}
    )
    queue = f"metrics-{os.getpid()}"
    with live.running(
        live.celery_worker_args(queues=queue), env=env, log_path=tmp_path / "worker.log"
    ) as proc:
        from celery_app import app

        def beat_ok() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            return bool(list((var / "health").glob("worker-*.json")))

        live.wait_until(beat_ok, timeout=90, message="worker heartbeat")
        assert _health("worker", capsys)[0] == 0
        # An unexpected argument fails inside the worker (send_task skips the client-side check).
        app.send_task("core.ping", kwargs={"unexpected": 1}, queue=queue)
        monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mp))
        name = "observator_celery_task_failures_total"
        live.wait_until(
            lambda: sample(scrape(client), name, task="core.ping") == 1, timeout=60, message="failure counted"
        )


def test_queue_depth_on_the_embedded_broker(tmp_path, settings):
    from core.broker import _SCHEMA, sqlite_connect

    path = tmp_path / "broker.sqlite"
    settings.CELERY_BROKER_URL = f"sqlite:///{path}"
    assert metrics.queue_depths() == {"default": 0, "ml": 0}  # no broker file yet
    db = sqlite_connect(str(path))
    db.executescript(_SCHEMA)
    db.executemany(
        "INSERT INTO message (queue, payload) VALUES (?, ?)", [("ml", "{}")] * 3 + [("default", "{}")]
    )
    db.commit()
    db.close()
    assert metrics.queue_depths() == {"default": 1, "ml": 3}


def test_queue_depth_on_redis(redis_url, settings):
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/11"
    settings.CELERY_BROKER_URL = url
    client = redis.Redis.from_url(url)
    client.delete("default", "ml")
    client.rpush("ml", "a", "b")
    try:
        assert metrics.queue_depths() == {"default": 0, "ml": 2}
    finally:
        client.delete("default", "ml")
        client.close()


@pytest.mark.django_db
def test_model_age_last_retrain_and_day_uploads_from_the_database(client):
    import datetime as dt

    from django.utils import timezone

    from market.models import DayUpload
    from mlmodel.models import ModelVersion, TrainingRun

    v = ModelVersion.objects.create(
        name="lstm",
        market="KRW-AGE",
        version=1,
        status="active",
        horizon_s=10,
        feature_version="t",
        artifact="x.pt",
    )
    ModelVersion.objects.filter(pk=v.pk).update(created_at=timezone.now() - dt.timedelta(hours=2))
    now = timezone.now()
    TrainingRun.objects.create(market="KRW-AGE", state="succeeded", finished_at=now - dt.timedelta(hours=1))
    TrainingRun.objects.create(market="KRW-AGE", state="failed", finished_at=now)
    TrainingRun.objects.create(market="KRW-OK", state="succeeded", finished_at=now)
    day = dt.date(2026, 1, 1)
    DayUpload.objects.create(kind="orderbook", market="KRW-AGE", day=day, status="verified")
    DayUpload.objects.create(kind="trade", market="KRW-AGE", day=day, status="failed")
    DayUpload.objects.create(kind="orderbook", market="KRW-OK", day=day, status="verified")
    text = scrape(client)
    assert 7100 < sample(text, "observator_model_age_seconds", market="KRW-AGE") < 7400
    assert sample(text, "observator_retrain_last_success", market="KRW-AGE") == 0  # the latest run failed
    assert sample(text, "observator_retrain_last_success", market="KRW-OK") == 1
    assert sample(text, "observator_day_uploads", status="verified") == 2
    assert sample(text, "observator_day_uploads", status="failed") == 1


def test_prediction_latency_is_observed(client):
    from mlmodel.serving import Server

    name = "observator_prediction_seconds_count"
    before = sample(scrape(client), name)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any outcome of a bad batch is timed
        Server().ingest(object())  # type: ignore[arg-type]
    assert sample(scrape(client), name) - before == 1


@pytest.mark.django_db
def test_a_killed_collector_stops_counting_its_markets(client, tmp_path, monkeypatch):
    """Live gauges of a process that died without cleaning up (SIGKILL) leave the sum at the next scrape."""
    mp = metrics.metrics_dir_prepare(tmp_path / "mp")
    env = {**os.environ, metrics.MULTIPROC_ENV: str(mp), "DJANGO_SETTINGS_MODULE": "observator.settings.test"}
    code = (
        "import django; django.setup()\n"
        "from core import metrics\n"
        "metrics.COLLECTOR_MARKETS.labels('{shard}').set({n})\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    for shard, n in (("a", 3), ("b", 4)):
        subprocess.run([sys.executable, "-c", code.format(shard=shard, n=n)], cwd=ROOT, env=env, timeout=120)
    assert len(list(mp.glob("gauge_livesum_*.db"))) == 2
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mp))
    text = scrape(client)
    assert sample(text, "observator_collector_markets_owned", shard="a") == 0
    assert not list(mp.glob("gauge_livesum_*.db"))


def test_metrics_serve_answers_without_a_web(tmp_path, monkeypatch):
    import threading
    from http.server import ThreadingHTTPServer

    import httpx

    from core.management.commands.metrics_serve import _Handler

    mp = metrics.metrics_dir_prepare(tmp_path / "mp")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mp))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        answer = httpx.get(f"{base}/metrics", timeout=10)
        assert answer.status_code == 200 and "observator_celery_queue_depth" in answer.text
        assert httpx.get(f"{base}/other", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
