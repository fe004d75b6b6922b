"""Day-file upload services: finished day files to object storage (S3 via django-storages), verify, retain.

* :func:`day_file_upload` compacts one closed kind/market/day into a single Parquet file, uploads it to the
  default storage under ``marketdata/{kind}/{market}/{day}/{market}_{kind}_{day}.parquet``, reads it back to
  verify size and checksum, and records the result in :class:`market.models.DayUpload`. Safe to run twice.
* :func:`day_files_upload_finished` does that for every finished day not yet verified (the 00:05 KST task).
* :func:`day_files_apply_retention` deletes local days older than ``MARKET_RETENTION_DAYS`` **only if** their
  upload is verified and the local file is still the one that was verified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone

from core.logging import redact
from market import dayfiles
from market.models import DayUpload

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class DayUploadError(Exception):
    """The stored object does not match the local file (or could not be written)."""


@dataclass
class UploadSummary:
    verified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "skipped": self.skipped, "failed": self.failed}


def _today() -> dt.date:
    return timezone.localdate(timezone=dayfiles.KST)


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else Path(settings.MARKET_DATA_DIR)


def _storage(storage: Storage | None) -> Storage:
    return storage if storage is not None else storages["default"]


def day_upload_key(*, kind: str, market: str, day: dt.date) -> str:
    prefix = settings.MARKET_UPLOAD_PREFIX.strip("/")
    return f"{prefix}/{kind}/{market}/{day.isoformat()}/{market}_{kind}_{day.isoformat()}.parquet"


def file_digests(path: Path) -> tuple[int, str, str]:
    """(size, sha256 hex, md5 hex) of a local file."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def _stored_sha256(storage: Storage, key: str) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with storage.open(key, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _s3_head(storage: Storage, key: str) -> tuple[int, str] | None:
    """(ContentLength, ETag) from a HEAD on S3 storages; ``None`` for other storages."""
    bucket = getattr(storage, "bucket", None)
    if bucket is None or not hasattr(storage, "_normalize_name"):
        return None
    obj = bucket.Object(storage._normalize_name(key))  # type: ignore[attr-defined]
    obj.load()
    return int(obj.content_length), str(obj.e_tag).strip('"')


def multipart_etag(path: Path, chunk_size: int) -> str:
    """The S3 ETag of ``path`` uploaded in ``chunk_size`` parts: ``md5(md5(part1) + md5(part2) ...)-N``."""
    digests = []
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if len(digests) <= 1:
        return digests[0].hex() if digests else hashlib.md5(b"", usedforsecurity=False).hexdigest()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def stored_object_matches(
    *, storage: Storage, key: str, size: int, sha256: str, md5: str, local_path: Path | None = None
) -> None:
    """Raise :class:`DayUploadError` unless the stored object has this size and content.

    On S3 a single-part upload's ETag is the MD5 of the content and a multipart one is recomputed from the
    local file with the upload's part size (HEAD is enough either way); otherwise (other storages, or an ETag
    that cannot be recomputed) the object is downloaded again and its SHA-256 compared.
    """
    head = _s3_head(storage, key)
    if head is not None:
        stored_size, etag = head
        if stored_size != size:
            raise DayUploadError(f"stored size {stored_size} != local size {size}")
        if "-" not in etag:
            if etag != md5:
                raise DayUploadError("stored ETag does not match the local MD5")
            return
        if local_path is not None:
            # Multipart: the ETag is the MD5 of the parts' MD5s; recompute it with the upload's part size.
            config = getattr(storage, "transfer_config", None)
            chunk = int(getattr(config, "multipart_chunksize", 8 * 1024 * 1024))
            if multipart_etag(local_path, chunk) == etag:
                return
    stored_size, stored_sha = _stored_sha256(storage, key)
    if stored_size != size:
        raise DayUploadError(f"stored size {stored_size} != local size {size}")
    if stored_sha != sha256:
        raise DayUploadError("stored SHA-256 does not match the local file")


def day_file_upload(
    *,
    kind: str,
    market: str,
    day: dt.date,
    root: str | Path | None = None,
    storage: Storage | None = None,
) -> DayUpload:
    """Compact, upload, verify and record one closed day. Idempotent: a verified, unchanged day is skipped.

    Raises :class:`DayUploadError` (or the storage's error) after recording the failure on the row.
    """
    root_path = _root(root)
    storage = _storage(storage)
    directory = dayfiles.day_dir(root_path, kind, market, day)
    upload, _ = DayUpload.objects.get_or_create(kind=kind, market=market, day=day)
    try:
        if not dayfiles.is_complete(directory):
            raise DayUploadError("the day is not closed yet")
        path = dayfiles.compact_day(root_path, kind, market, day)
        if path is None:
            raise DayUploadError("the day has no data files")
        size, sha256, md5 = file_digests(path)
        key = day_upload_key(kind=kind, market=market, day=day)
        if upload.status == DayUpload.Status.VERIFIED and upload.sha256 == sha256 and upload.key == key:
            return upload
        upload.attempts += 1
        upload.key, upload.size, upload.sha256 = key, size, sha256
        upload.rows = pq.ParquetFile(path).metadata.num_rows
        upload.status = DayUpload.Status.PENDING
        upload.save()
        if storage.exists(key):
            storage.delete(key)  # a previous failed or outdated attempt: replace it with the exact key
        with open(path, "rb") as fh:
            saved = storage.save(key, File(fh, name=path.name))
        if saved != key:
            storage.delete(saved)
            raise DayUploadError(f"storage stored the file under another name ({saved})")
        upload.status, upload.uploaded_at, upload.error = DayUpload.Status.UPLOADED, timezone.now(), ""
        upload.save(update_fields=["status", "uploaded_at", "error", "updated_at"])
        stored_object_matches(storage=storage, key=key, size=size, sha256=sha256, md5=md5, local_path=path)
    except Exception as exc:
        upload.status = DayUpload.Status.FAILED
        upload.error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        upload.save(update_fields=["status", "error", "updated_at"])
        logger.warning("upload of %s/%s/%s failed: %s", kind, market, day, upload.error)
        raise
    upload.status, upload.verified_at = DayUpload.Status.VERIFIED, timezone.now()
    upload.save(update_fields=["status", "verified_at", "updated_at"])
    logger.info("uploaded and verified %s (%d bytes)", upload.key, size)
    return upload


def day_files_upload_finished(
    *, root: str | Path | None = None, storage: Storage | None = None, today: dt.date | None = None
) -> UploadSummary:
    """Upload every finished day (closed, or before today and quiet) that is not verified yet.

    One failing day does not stop the others; the summary lists failures so the task can retry.
    """
    root_path = _root(root)
    today = today or _today()
    summary = UploadSummary()
    verified = {
        (u.kind, u.market, u.day): u.sha256
        for u in DayUpload.objects.filter(status=DayUpload.Status.VERIFIED).only(
            "kind", "market", "day", "sha256"
        )
    }
    for kind, market, day, directory in dayfiles.finished_days(root_path, today=today):
        label = f"{kind}/{market}/{day.isoformat()}"
        parts = dayfiles.segment_paths(directory)
        known = verified.get((kind, market, day))
        if known and len(parts) == 1 and file_digests(parts[0])[1] == known:
            summary.skipped.append(label)
            continue
        try:
            day_file_upload(kind=kind, market=market, day=day, root=root_path, storage=storage)
        except Exception as exc:  # noqa: BLE001 - recorded on the row; the others still go
            summary.failed[label] = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
        else:
            summary.verified.append(label)
    return summary


def day_files_apply_retention(
    *, root: str | Path | None = None, today: dt.date | None = None, keep_days: int | None = None
) -> list[str]:
    """Delete local days older than ``keep_days`` (default ``MARKET_RETENTION_DAYS``) whose upload is verified
    and whose single local file still hashes to what was verified. Returns the deleted ``kind/market/day``."""
    root_path = _root(root)
    today = today or _today()
    keep = settings.MARKET_RETENTION_DAYS if keep_days is None else keep_days
    cutoff = today - dt.timedelta(days=keep)
    deleted: list[str] = []
    uploads = {
        (u.kind, u.market, u.day): u
        for u in DayUpload.objects.filter(day__lt=cutoff, status=DayUpload.Status.VERIFIED)
    }
    for kind in dayfiles.KINDS:
        kind_dir = root_path / kind
        if not kind_dir.is_dir():
            continue
        for market_dir in sorted(p for p in kind_dir.iterdir() if p.is_dir()):
            for day in dayfiles.list_days(root_path, kind, market_dir.name):
                if day >= cutoff:
                    continue
                label = f"{kind}/{market_dir.name}/{day.isoformat()}"
                upload = uploads.get((kind, market_dir.name, day))
                directory = dayfiles.day_dir(root_path, kind, market_dir.name, day)
                if upload is None:
                    logger.info("retention keeps %s: no verified upload", label)
                    continue
                parts = dayfiles.segment_paths(directory)
                if len(parts) != 1 or file_digests(parts[0])[1] != upload.sha256:
                    logger.warning("retention keeps %s: local files changed since the verified upload", label)
                    continue
                shutil.rmtree(directory)
                upload.local_deleted_at = timezone.now()
                upload.save(update_fields=["local_deleted_at", "updated_at"])
                deleted.append(label)
    return deleted


def sample_import(
    *, csv_path: str | Path, market: str = "KRW-ADA", root: str | Path | None = None
) -> dict[str, int]:
    """Convert the real Upbit CSV sample into closed day files (one per KST day it spans) for ``market``.

    Re-running replaces what a previous import wrote for those days (the import is the only writer there).
    """
    book, trades = dayfiles.sample_csv_tables(csv_path)
    out = dayfiles.write_closed_days(_root(root), market, {"orderbook": book, "trade": trades}, replace=True)
    return {"orderbook": out["rows"]["orderbook"], "trade": out["rows"]["trade"], "days": len(out["days"])}
