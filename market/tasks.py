"""Celery tasks of the market app: nightly upload of finished day files to S3 and local retention, and the
dashboard's news feeds.

Both are idempotent (a verified day is skipped; retention only deletes verified, unchanged days), so they
ack late and may run twice. They only parse input and call :mod:`market.uploads` services.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from market import services, uploads


class UploadsIncomplete(Exception):
    """Some finished days could not be uploaded/verified; raised so Celery retries with backoff."""


@shared_task(
    bind=True,
    name="market.tasks.upload_finished_days",
    autoretry_for=(UploadsIncomplete, OSError),
    retry_backoff=60,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
    acks_late=True,
    soft_time_limit=3000,
    time_limit=3300,
)
def upload_finished_days(self: Any) -> dict[str, Any]:  # noqa: ARG001
    """Upload every finished day that is not verified yet (beat: 00:05 Asia/Seoul)."""
    summary = uploads.day_files_upload_finished()
    if summary.failed:
        raise UploadsIncomplete(f"{len(summary.failed)} day(s) failed: {sorted(summary.failed)[:5]}")
    return summary.as_dict()


@shared_task(name="market.tasks.apply_retention", acks_late=True, soft_time_limit=600, time_limit=660)
def apply_retention() -> dict[str, Any]:
    """Delete local days older than MARKET_RETENTION_DAYS whose upload is verified."""
    deleted = uploads.day_files_apply_retention()
    return {"deleted": deleted}


@shared_task(name="market.tasks.refresh_news", ignore_result=True, soft_time_limit=60, time_limit=90)
def refresh_news() -> dict[str, Any]:
    """Fetch the configured news feeds and store new items; idempotent, safe to overlap."""
    result = services.news_refresh()
    return {
        "created": result.created,
        "duplicates": result.duplicates,
        "feeds_ok": result.feeds_ok,
        "feeds_failed": len(result.feeds_failed),
        "pruned": result.pruned,
    }
