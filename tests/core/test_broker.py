"""The embedded Celery broker (core/broker.py) on its own, through kombu: every message to exactly one
consumer under concurrent publishers and consumers in separate processes, fanout across processes,
unacknowledged messages back in the queue, a fresh folder made on first use."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection, Exchange, Queue

from core.broker import broker_path

TRANSPORT = "core.broker:Transport"
QUEUE = Queue("work", Exchange("work"), routing_key="work")


def _connection(db: Path) -> Connection:
    return Connection(f"sqlite:///{db}", transport=TRANSPORT)


def _publish(db: str, start: int, n: int) -> None:
    with _connection(Path(db)) as conn, conn.Producer() as producer:
        for i in range(start, start + n):
            producer.publish({"i": i}, exchange=QUEUE.exchange, routing_key="work", declare=[QUEUE])


def _consume(db: str, out: multiprocessing.Queue, idle_s: float) -> None:
    got: list[int] = []
    conn = _connection(Path(db))
    with conn, conn.Consumer(QUEUE, callbacks=[lambda body, msg: (got.append(body["i"]), msg.ack())]):
        while True:
            try:
                conn.drain_events(timeout=idle_s)
            except TimeoutError:
                break
    out.put(got)


def test_every_message_reaches_exactly_one_consumer_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh" / "folder" / "broker.sqlite")  # made on first use
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    consumers = [ctx.Process(target=_consume, args=(db, out, 5.0)) for _ in range(3)]
    publishers = [ctx.Process(target=_publish, args=(db, k * 1000, 1000)) for k in range(3)]
    for p in consumers + publishers:
        p.start()
    got: Counter[int] = Counter()
    for _ in consumers:
        got.update(out.get(timeout=120))
    for p in consumers + publishers:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(got.values()) == 3000
    assert set(got) == set(range(3000)) and max(got.values()) == 1  # none lost, none twice
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert check.execute("SELECT COUNT(*) FROM message").fetchone()[0] == 0  # taken rows are gone


def test_fanout_reaches_the_queues_other_connections_bound(tmp_path: Path) -> None:
    db = tmp_path / "broker.sqlite"
    bus = Exchange("bus", type="fanout")
    a, b = Queue("a", bus), Queue("b", bus)
    with _connection(db) as c1, _connection(db) as c2, _connection(db) as sender:
        a(c1.default_channel).declare()
        b(c2.default_channel).declare()
        sender.Producer().publish({"hello": 1}, exchange=bus, routing_key="")
        for conn, q in ((c1, a), (c2, b)):
            msg = q(conn.default_channel).get(no_ack=True)
            assert msg is not None and msg.payload == {"hello": 1}


def test_an_unacknowledged_message_goes_back_when_the_consumer_closes(tmp_path: Path) -> None:
    db = tmp_path / "broker.sqlite"
    with _connection(db) as conn:
        conn.Producer().publish({"n": 1}, exchange=QUEUE.exchange, routing_key="work", declare=[QUEUE])
        msg = QUEUE(conn.default_channel).get()  # taken, never acknowledged
        assert msg is not None and msg.payload == {"n": 1}
        with pytest.raises(Empty):
            conn.default_channel._get("work")  # noqa: SLF001 - nothing left in the table meanwhile
    with _connection(db) as conn:
        again = QUEUE(conn.default_channel).get(no_ack=True)
        assert again is not None and again.payload == {"n": 1}


@pytest.mark.parametrize(
    ("url", "path"), [("sqlite:////abs/broker.sqlite", "/abs/broker.sqlite"), ("sqlite:///rel.db", "rel.db")]
)
def test_broker_path_reads_sqlalchemy_style_urls(url: str, path: str) -> None:
    assert broker_path(url) == path


@pytest.mark.parametrize("url", ["filesystem://", "sqlite://", "redis://localhost/0"])
def test_broker_path_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError):
        broker_path(url)


def test_embedded_settings_use_the_sqlite_broker(settings) -> None:  # noqa: ANN001
    if settings.REDIS_URL:
        pytest.skip("REDIS_URL is set: the broker is Redis")
    assert settings.CELERY_BROKER_TRANSPORT == TRANSPORT
    assert broker_path(settings.CELERY_BROKER_URL).endswith("celery/broker.sqlite")
    assert not hasattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS")  # no filesystem folders any more


def test_a_forked_child_gets_its_own_sqlite_connection(tmp_path: Path) -> None:
    """Celery's prefork pool forks after the parent used the broker; the child must not reuse (or close)
    the parent's SQLite connection, and the parent keeps working afterwards."""
    import os

    db = tmp_path / "broker.sqlite"
    with _connection(db) as conn:
        conn.Producer().publish(
            {"who": "parent"}, exchange=QUEUE.exchange, routing_key="work", declare=[QUEUE]
        )
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's exit code is the assertion
            try:
                with _connection(db) as child:
                    child.Producer().publish(
                        {"who": "child"}, exchange=QUEUE.exchange, routing_key="work", declare=[QUEUE]
                    )
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        got = [QUEUE(conn.default_channel).get(no_ack=True) for _ in range(2)]
        assert [m.payload["who"] for m in got if m is not None] == ["parent", "child"]
