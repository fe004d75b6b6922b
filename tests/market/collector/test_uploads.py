"""Upload of finished days to S3 (moto's standalone server over HTTP), read-back verification, the
DayUpload record, the Celery tasks, and retention that deletes only verified days."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from django.core.files.storage import storages

from market import dayfiles, tasks, uploads
from market.models import DayUpload
from tests import live
from tests.s3 import REGION, s3_client

from .factories import FakeClock, book, kst_ms, trade

pytestmark = [pytest.mark.django_db, pytest.mark.live]


def _closed_day(root: Path, day: dt.date, *, market: str = "KRW-BTC", segments: int = 3) -> None:
    """A day recorded by the writer in several segments and closed at midnight."""
    clock = FakeClock(kst_ms(day.year, day.month, day.day, 23, 50))
    writer = dayfiles.DayFileWriter(root, markets=[market], clock=clock, roll_budget=None)
    for i in range(segments):
        writer.add_orderbook(book(market, clock.advance(1000)))
        writer.add_trade(trade(market, clock.now, sid=i))
        writer.flush()
    writer.add_gap(market, clock.now, clock.advance(500), "reconnect", "test")
    clock.now = kst_ms(day.year, day.month, day.day) + dayfiles.MS_PER_DAY + 1000
    writer.tick()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_finished_days_are_uploaded_verified_and_recorded(s3: tuple[Any, str], settings: Any) -> None:
    client, bucket = s3
    root = Path(settings.MARKET_DATA_DIR)
    today = dt.date(2026, 3, 10)
    _closed_day(root, dt.date(2026, 3, 8))
    _closed_day(root, dt.date(2026, 3, 9))
    # Today's day is still being written: never uploaded.
    open_writer = dayfiles.DayFileWriter(root, clock=FakeClock(kst_ms(2026, 3, 10, 1)))
    open_writer.add_orderbook(book("KRW-BTC", kst_ms(2026, 3, 10, 1)))
    open_writer.close()

    summary = uploads.day_files_upload_finished(today=today)
    assert not summary.failed
    assert len(summary.verified) == 6  # orderbook, trade, gap x 2 days
    rows = DayUpload.objects.order_by("day", "kind")
    closed_days = (dt.date(2026, 3, 8), dt.date(2026, 3, 9))
    assert {(u.kind, u.day) for u in rows} == {(k, d) for k in dayfiles.KINDS for d in closed_days}
    for upload in rows:
        assert upload.status == DayUpload.Status.VERIFIED and upload.attempts == 1
        assert (
            upload.key
            == f"marketdata/{upload.kind}/KRW-BTC/{upload.day}/KRW-BTC_{upload.kind}_{upload.day}.parquet"
        )
        body = client.get_object(Bucket=bucket, Key=upload.key)["Body"].read()
        assert len(body) == upload.size and _sha(body) == upload.sha256
        local = dayfiles.segment_paths(dayfiles.day_dir(root, upload.kind, "KRW-BTC", upload.day))
        assert len(local) == 1 and _sha(local[0].read_bytes()) == upload.sha256  # compacted before upload
    book_upload = rows.get(kind="orderbook", day=dt.date(2026, 3, 9))
    assert book_upload.rows == 3
    assert not DayUpload.objects.filter(day=today).exists()

    again = uploads.day_files_upload_finished(today=today)
    assert not again.verified and len(again.skipped) == 6  # idempotent: nothing sent twice
    assert set(DayUpload.objects.values_list("attempts", flat=True)) == {1}


def test_tampered_object_fails_verification(s3: tuple[Any, str], settings: Any) -> None:
    client, bucket = s3
    root = Path(settings.MARKET_DATA_DIR)
    day = dt.date(2026, 3, 9)
    _closed_day(root, day)
    upload = uploads.day_file_upload(kind="trade", market="KRW-BTC", day=day)
    assert upload.status == DayUpload.Status.VERIFIED
    client.put_object(Bucket=bucket, Key=upload.key, Body=b"not the file")
    with pytest.raises(uploads.DayUploadError):
        uploads.stored_object_matches(storage=storages["default"], key=upload.key, size=upload.size,
                                      sha256=upload.sha256, md5="0" * 32)  # fmt: skip


def test_unreachable_s3_records_failure_and_the_task_retries(s3: tuple[Any, str], settings: Any) -> None:
    root = Path(settings.MARKET_DATA_DIR)
    day = dt.date(2026, 3, 9)
    _closed_day(root, day)
    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{live.free_port()}"  # nothing listens there
    settings.AWS_S3_CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1)
    settings.STORAGES = {**settings.STORAGES}  # a fresh storage object with the new endpoint
    with pytest.raises(tasks.UploadsIncomplete):
        tasks.upload_finished_days()
    failed = DayUpload.objects.get(kind="orderbook", day=day)
    assert failed.status == DayUpload.Status.FAILED and failed.attempts == 1 and failed.error
    assert "testing" not in failed.error  # no credentials in the recorded error
    # Retention never deletes a day whose upload is not verified.
    assert tasks.apply_retention() == {"deleted": []}
    assert dayfiles.day_dir(root, "orderbook", "KRW-BTC", day).is_dir()
    opts = tasks.upload_finished_days
    assert opts.autoretry_for and opts.retry_backoff and opts.max_retries


def test_retention_deletes_only_verified_unchanged_old_days(s3: tuple[Any, str], settings: Any) -> None:
    root = Path(settings.MARKET_DATA_DIR)
    settings.MARKET_RETENTION_DAYS = 3
    today = dt.date(2026, 3, 20)
    verified_old, never_uploaded, changed, recent = (today - dt.timedelta(days=n) for n in (5, 6, 4, 1))
    for day in (verified_old, never_uploaded, changed, recent):
        _closed_day(root, day, segments=2)
    for day in (verified_old, changed, recent):
        for kind in dayfiles.KINDS:
            uploads.day_file_upload(kind=kind, market="KRW-BTC", day=day)
    # Data added locally after the upload: the verified copy is no longer the local one.
    changed_dir = dayfiles.day_dir(root, "trade", "KRW-BTC", changed)
    dayfiles.write_table_atomic(
        dayfiles.read_day(root, "trade", "KRW-BTC", changed), changed_dir / "part-00001.parquet"
    )

    deleted = uploads.day_files_apply_retention(today=today)
    assert sorted(deleted) == sorted(
        [f"{k}/KRW-BTC/{verified_old}" for k in dayfiles.KINDS]
        + [f"{k}/KRW-BTC/{changed}" for k in ("orderbook", "gap")]
    )
    assert not dayfiles.day_dir(root, "orderbook", "KRW-BTC", verified_old).exists()
    assert dayfiles.day_dir(root, "orderbook", "KRW-BTC", never_uploaded).is_dir()
    assert changed_dir.is_dir()
    assert dayfiles.day_dir(root, "orderbook", "KRW-BTC", recent).is_dir()
    gone = DayUpload.objects.get(kind="orderbook", day=verified_old)
    assert gone.local_deleted_at is not None


def test_beat_runs_the_upload_at_0005_seoul(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["market-upload-finished-days"]
    assert entry["task"] == tasks.upload_finished_days.name == "market.tasks.upload_finished_days"
    assert entry["schedule"].hour == {0} and entry["schedule"].minute == {5}
    assert settings.CELERY_TIMEZONE == "Asia/Seoul"
    assert tasks.apply_retention.name == "market.tasks.apply_retention"


@pytest.fixture
def worker_s3_env(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Environment for a real worker process: S3 (moto) through settings read from the environment."""
    bucket = f"obs-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    root = tmp_path / "worker-data"
    for name, value in {
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MARKET_DATA_DIR": str(root),
    }.items():
        monkeypatch.setenv(name, value)
    return root, bucket


@pytest.mark.django_db(transaction=True)
def test_upload_task_runs_in_a_real_celery_worker(
    worker_s3_env: tuple[Path, str], s3_endpoint: str, celery_worker_process: None
) -> None:
    root, bucket = worker_s3_env
    day = dt.date(2026, 3, 9)  # a finished day in the past
    _closed_day(root, day)
    result = tasks.upload_finished_days.apply_async(queue="default").get(timeout=120)
    assert sorted(result["verified"]) == sorted(f"{k}/KRW-BTC/{day}" for k in dayfiles.KINDS)
    upload = DayUpload.objects.get(kind="orderbook", market="KRW-BTC", day=day)
    assert upload.status == DayUpload.Status.VERIFIED
    body = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=upload.key)["Body"].read()
    assert _sha(body) == upload.sha256


def test_multipart_upload_is_verified_from_its_etag(s3: tuple[Any, str], settings: Any) -> None:
    import numpy as np
    from boto3.s3.transfer import TransferConfig

    root = Path(settings.MARKET_DATA_DIR)
    day = dt.date(2026, 3, 9)
    clock = FakeClock(kst_ms(2026, 3, 9, 12))
    writer = dayfiles.DayFileWriter(root, clock=clock, roll_budget=None)
    rng = np.random.default_rng(1)
    base = book("KRW-BTC", clock.now)
    for _ in range(14000):  # random sizes: a file of several MB that compresses poorly
        ts = clock.advance(10)
        ask_sz, bid_sz = tuple(rng.random(30)), tuple(rng.random(30))
        writer.add_orderbook(
            base.from_sides("KRW-BTC", ts, ts, base.ask_price, ask_sz, base.bid_price, bid_sz)
        )
    clock.now = kst_ms(2026, 3, 10, 0, 1)
    writer.tick()
    storage = storages["default"]
    part = 5 * 1024 * 1024  # S3's minimum part size
    storage.transfer_config = TransferConfig(multipart_threshold=part, multipart_chunksize=part)
    upload = uploads.day_file_upload(kind="orderbook", market="KRW-BTC", day=day, storage=storage)
    assert upload.status == DayUpload.Status.VERIFIED and upload.size > part
    head = s3[0].head_object(Bucket=s3[1], Key=upload.key)
    assert "-" in head["ETag"]  # it really went up in parts
    local = dayfiles.segment_paths(dayfiles.day_dir(root, "orderbook", "KRW-BTC", day))[0]
    assert uploads.multipart_etag(local, part) == head["ETag"].strip('"')


def test_local_storage_without_a_bucket_uses_the_same_path(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MARKET_DATA_DIR = tmp_path / "data"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    day = dt.date(2026, 3, 9)
    _closed_day(Path(settings.MARKET_DATA_DIR), day)
    summary = uploads.day_files_upload_finished(today=dt.date(2026, 3, 10))
    assert len(summary.verified) == 3 and not summary.failed
    upload = DayUpload.objects.get(kind="trade", day=day)
    stored = Path(settings.MEDIA_ROOT) / upload.key
    assert stored.is_file() and _sha(stored.read_bytes()) == upload.sha256
