"""Archived day files for readers that need more history than the collector keeps locally (ML training).

* :func:`day_files_ensure_local` returns the root under which ``dayfiles.read_day`` finds one kind/market/day:
  the collector's live directory when the day is still there, otherwise a separate cache directory into
  which the verified upload is downloaded (SHA-256 checked against :class:`market.models.DayUpload`, written
  atomically). The live directory is never written to, so retention is not confused by fetched copies.
* :func:`market_days_available` lists the days of a market that exist locally or as a verified upload.
* :func:`day_files_cache_prune` removes cached days a reader no longer needs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import Storage, storages

from market import dayfiles
from market.models import DayUpload

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
CACHED_NAME = f"{dayfiles.PART_PREFIX}00000.parquet"


class DayArchiveError(Exception):
    """An archived day cannot be used: the stored object is missing, unreadable or not what was verified."""

    def __init__(self, message: str, *, kind: str, market: str, day: dt.date) -> None:
        super().__init__(f"{kind}/{market}/{day.isoformat()}: {message}")
        self.kind, self.market, self.day = kind, market, day


class DayArchiveChecksumError(DayArchiveError):
    """The archived object's content does not match the size/SHA-256 recorded when it was verified."""


@dataclass(frozen=True)
class DayAvailability:
    day: dt.date
    local: bool
    archived: bool


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else Path(settings.MARKET_DATA_DIR)


def _storage(storage: Storage | None) -> Storage:
    return storage if storage is not None else storages["default"]


def _sha256_file(path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _verified_upload(*, kind: str, market: str, day: dt.date) -> DayUpload | None:
    return (
        DayUpload.objects.filter(kind=kind, market=market, day=day, status=DayUpload.Status.VERIFIED)
        .exclude(key="")
        .exclude(sha256="")
        .first()
    )


def _download_verified(*, storage: Storage, upload: DayUpload, target: Path) -> None:
    """Stream the stored object to a temp file next to ``target``, check size and SHA-256, then rename it into
    place. On any mismatch nothing is left at ``target``."""
    label = {"kind": upload.kind, "market": upload.market, "day": upload.day}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}{dayfiles.TMP_SUFFIX}"
    sha, size = hashlib.sha256(), 0
    try:
        try:
            with storage.open(upload.key, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except Exception as exc:  # the storage's own errors (missing key, network) vary by backend
            raise DayArchiveError(
                f"cannot download {upload.key}: {type(exc).__name__}: {exc}", **label
            ) from exc
        if upload.size is not None and size != upload.size:
            raise DayArchiveChecksumError(
                f"archived object {upload.key} has {size} bytes, {upload.size} were verified at upload",
                **label,
            )
        if sha.hexdigest() != upload.sha256:
            raise DayArchiveChecksumError(
                f"archived object {upload.key} does not match the SHA-256 verified at upload "
                f"(got {sha.hexdigest()[:12]}…, expected {upload.sha256[:12]}…); refusing to use it",
                **label,
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def day_files_ensure_local(
    *,
    kind: str,
    market: str,
    day: dt.date,
    cache_dir: str | Path,
    root: str | Path | None = None,
    storage: Storage | None = None,
) -> Path | None:
    """The root (``root``/``MARKET_DATA_DIR`` or ``cache_dir``) under which ``dayfiles.read_day`` finds this
    day, fetching a verified upload into ``cache_dir`` when the day is no longer in the live directory.

    ``None`` when the day is neither local nor uploaded and verified. Raises :class:`DayArchiveChecksumError`
    when the archived object does not match the recorded SHA-256 (it is never used), :class:`DayArchiveError`
    when it cannot be downloaded. A cached copy is re-hashed before it is trusted again.
    """
    live = _root(root)
    cache = Path(cache_dir)
    if live.resolve() == cache.resolve():
        raise ValueError("the training cache must not be the collector's live directory")
    if dayfiles.segment_paths(dayfiles.day_dir(live, kind, market, day)):
        return live
    upload = _verified_upload(kind=kind, market=market, day=day)
    if upload is None:
        return None
    directory = dayfiles.day_dir(cache, kind, market, day)
    target = directory / CACHED_NAME
    if target.is_file():
        size, sha = _sha256_file(target)
        if sha == upload.sha256 and (upload.size is None or size == upload.size):
            return cache
        logger.warning("cached %s/%s/%s is stale or damaged; fetching it again", kind, market, day)
    if directory.exists():
        shutil.rmtree(directory)  # ours: a stale copy or a different upload of the day
    _download_verified(storage=_storage(storage), upload=upload, target=target)
    dayfiles.mark_complete(directory)
    logger.info(
        "fetched archived %s (%d bytes, SHA-256 verified) into the training cache",
        upload.key,
        upload.size or 0,
    )
    return cache


def market_days_available(
    *, market: str, kind: str = "orderbook", root: str | Path | None = None
) -> list[DayAvailability]:
    """Every day of ``market``/``kind`` present in the live directory or archived with a verified upload."""
    live = _root(root)
    local = {
        d
        for d in dayfiles.list_days(live, kind, market)
        if dayfiles.segment_paths(dayfiles.day_dir(live, kind, market, d))
    }
    archived = set(
        DayUpload.objects.filter(kind=kind, market=market, status=DayUpload.Status.VERIFIED)
        .exclude(key="")
        .values_list("day", flat=True)
    )
    return [
        DayAvailability(day=d, local=d in local, archived=d in archived) for d in sorted(local | archived)
    ]


def day_files_cache_prune(*, cache_dir: str | Path, market: str, before: dt.date) -> list[str]:
    """Delete cached days of ``market`` older than ``before`` (all kinds). Returns ``kind/market/day``."""
    cache = Path(cache_dir)
    removed = []
    for kind in dayfiles.KINDS:
        for day in dayfiles.list_days(cache, kind, market):
            if day < before:
                shutil.rmtree(dayfiles.day_dir(cache, kind, market, day), ignore_errors=True)
                removed.append(f"{kind}/{market}/{day.isoformat()}")
    return removed
