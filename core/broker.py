"""The embedded Celery broker: a kombu virtual transport on one SQLite file in WAL mode (no server needed).

Why not kombu's filesystem transport: a consumer can move and read a message file while its publisher is
still writing it, and the worker dies with ``JSONDecodeError`` (issue 12). Why not kombu's SQLAlchemy
transport as it is: it keeps every delivered message (``visible = 0``) for good, scans them on every poll
and takes SQLite's write lock on every poll, empty or not. Here a message is one row; a consumer takes it
with one atomic ``DELETE ... RETURNING``, so nobody ever reads half a message and each message goes to
exactly one consumer; a poll that finds nothing is a plain indexed read that takes no lock (WAL readers
never block writers). Bindings live in the database too, so fanout (Celery's remote control) works across
processes. ``bench/bench_broker.py`` measures it against the filesystem transport and Redis.

Use it with ``broker_url = "sqlite:///<path>"`` and ``broker_transport = "core.broker:Transport"``.
Pure kombu + stdlib: no Django here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from json import dumps, loads
from pathlib import Path
from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

BUSY_TIMEOUT_S = 30.0
POLLING_INTERVAL_S = 0.05  # queues empty: ~0.5 % of a core per idle worker, ~25 ms added latency (median)
BUSY_POLLING_INTERVAL_S = 0.005  # prefetch full: only Python checks, no query, until a task frees a slot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS message_queue_id ON message (queue, id);
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, pattern, queue)
);
"""


def sqlite_connect(
    path: str | os.PathLike[str], *, autocommit: bool = True, timeout: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection with WAL, a busy timeout and ``synchronous=NORMAL`` (in WAL mode: safe against a crashed
    process; a power cut may lose the last transactions, never corrupt the file).

    ``autocommit=False`` keeps sqlite3's own transaction handling, as SQLAlchemy expects: this is also the
    ``creator`` of the Celery result backend's engine, so results get the same treatment."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(os.fspath(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    # Persistent in the file; the first process that sets it waits on the busy timeout like any writer.
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = NORMAL")
    if not autocommit:
        conn.isolation_level = ""
    return conn


def broker_path(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL (SQLAlchemy's spelling)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "sqlite" or not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"expected sqlite:///<path>, got {url!r}")
    return rest[1:]


class _Connections(threading.local):
    """One SQLite connection per thread and process: sqlite3 connections must not cross a fork, and
    kombu's connection pools hand a channel to whichever thread asks next."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[int, sqlite3.Connection]] = {}


_connections = _Connections()
_schema_ready: set[tuple[int, str]] = set()
_schema_lock = threading.Lock()
_inherited: list[sqlite3.Connection] = []


def _connection(path: str) -> sqlite3.Connection:
    pid = os.getpid()
    cached = _connections.by_path.get(path)
    if cached is not None and cached[0] == pid:
        return cached[1]
    if cached is not None:  # inherited through a fork: never used, never closed here (SQLite's advice)
        _inherited.append(cached[1])
    conn = sqlite_connect(path)
    with _schema_lock:
        if (pid, path) not in _schema_ready:
            conn.executescript(_SCHEMA)
            _schema_ready.add((pid, path))
    _connections.by_path[path] = (pid, conn)
    return conn


class Channel(virtual.Channel):
    """Queues, messages and bindings in one SQLite database shared by every process of the stack."""

    supports_fanout = True

    def __init__(self, connection: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(connection, **kwargs)
        self.path = broker_path(connection.client.hostname or "")

    @property
    def _db(self) -> sqlite3.Connection:
        return _connection(self.path)

    # Fetch every result (fetchall): an unfinished SELECT would keep its read snapshot open, so this
    # connection would stop seeing new messages and WAL checkpoints would starve.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
        self._db.execute("INSERT INTO message (queue, payload) VALUES (?, ?)", (queue, dumps(payload)))

    def _get(self, queue: str) -> dict[str, Any]:
        db = self._db
        if not db.execute("SELECT 1 FROM message WHERE queue = ? LIMIT 1", (queue,)).fetchall():
            raise Empty()  # the common case: no lock taken
        rows = db.execute(
            "DELETE FROM message WHERE id = (SELECT id FROM message WHERE queue = ? ORDER BY id LIMIT 1) "
            "RETURNING payload",
            (queue,),
        ).fetchall()
        if not rows:  # another consumer took it between the two statements
            raise Empty()
        return loads(bytes_to_str(rows[0][0]))

    def _size(self, queue: str) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM message WHERE queue = ?", (queue,)).fetchall()[0][0]
        )

    def _purge(self, queue: str) -> int:
        return self._db.execute("DELETE FROM message WHERE queue = ?", (queue,)).rowcount

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:  # noqa: ANN401
        self._db.execute(
            "DELETE FROM binding WHERE exchange = ? AND routing_key = ? AND pattern = ? AND queue = ?",
            (exchange, routing_key or "", pattern or "", queue),
        )
        self._purge(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO binding (exchange, routing_key, pattern, queue) VALUES (?, ?, ?, ?)",
            (exchange, routing_key or "", pattern or "", queue or ""),
        )

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        rows = self._db.execute(
            "SELECT routing_key, pattern, queue FROM binding WHERE exchange = ?", (exchange,)
        ).fetchall()
        return [(str(r), str(p), str(q)) for r, p, q in rows]

    def _put_fanout(self, exchange: str, payload: dict[str, Any], routing_key: str, **kwargs: Any) -> None:  # noqa: ANN401
        for _, _, queue in self.get_table(exchange):
            self._put(queue, payload, **kwargs)


class Transport(virtual.Transport):
    """kombu transport class for ``broker_transport = "core.broker:Transport"``."""

    Channel = Channel
    polling_interval = POLLING_INTERVAL_S
    # A locked or unreadable database is a lost connection (the worker reconnects and retries), never an
    # "Unrecoverable error" that kills the worker, as the filesystem transport's JSONDecodeError did.
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)
    can_parse_url = True
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"])
    )

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # noqa: ANN401
        """kombu's loop, except that "nothing to take because the prefetch is full" waits 5 ms, not the
        polling interval: kombu sleeps the full interval after either, so a worker whose task just
        finished would sit idle for the rest of it (a throughput cap of prefetch / interval)."""
        start = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and monotonic() - start >= timeout:
                    raise TimeoutError() from None
                busy = any(ch._consumers and not ch.qos.can_consume() for ch in self.channels)  # noqa: SLF001
                pause = BUSY_POLLING_INTERVAL_S if busy else self.polling_interval
                if timeout is not None:
                    pause = min(pause, max(0.0, timeout - (monotonic() - start)))
                sleep(pause)
