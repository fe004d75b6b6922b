"""Soak of the real Celery workers, started with the launcher's arguments, on the embedded broker and on
Redis: thousands of tasks through ``default`` and ``ml`` from several publisher processes at once (the
collector's real ``ingest_market_data`` with small batches and a cheap default-queue task) give 0 worker
crashes and 0 lost tasks. Issue 12: the filesystem broker killed both workers within 30 minutes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.core.broker_soak import private_redis_url, run_soak, soak_env

pytestmark = [pytest.mark.live, pytest.mark.soak, pytest.mark.timeout(420)]

SOAK_REDIS_DB = 11
# CI size (about a minute per broker on 2 cores); SOAK_SCALE=10 for a longer run by hand.
_SCALE = float(os.environ.get("SOAK_SCALE", "1"))
DEFAULT_TASKS = int(1200 * _SCALE)
ML_TASKS = int(300 * _SCALE)
PUBLISHERS = 4
RATE = 10.0  # per publisher: 40 tasks/s in all, 40x what the collector and beat send together


def _soak(broker: str, tmp_path: Path, redis_url: str = "") -> None:
    env = soak_env(var_dir=tmp_path / "var", redis_url=redis_url)
    result = run_soak(
        broker=broker,
        env=env,
        work_dir=tmp_path / "soak",
        default_tasks=DEFAULT_TASKS,
        ml_tasks=ML_TASKS,
        publishers=PUBLISHERS,
        rate=RATE,
    )
    print(result.summary())
    assert result.sent == {"default": DEFAULT_TASKS, "ml": ML_TASKS}
    assert result.crashes == 0, "\n".join(result.crash_lines[:20])
    assert result.failed == 0
    assert result.lost == 0, result.summary()


def test_embedded_broker_soak_no_crash_no_loss(transactional_db, tmp_path):
    _soak("embedded (sqlite)", tmp_path)
    # The embedded default needs no folder of its own: one broker file, one results file, both WAL.
    celery_dir = tmp_path / "var" / "celery"
    assert sorted(p.name for p in celery_dir.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "broker.sqlite",
        "results.sqlite",
    ]


def test_redis_broker_soak_no_crash_no_loss(transactional_db, tmp_path, redis_url):
    _soak("redis", tmp_path, private_redis_url(redis_url, SOAK_REDIS_DB))
