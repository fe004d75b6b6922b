"""Celery tasks for the dashboard feeds (registered as ``market.tasks.*``; found by
``app.autodiscover_tasks(related_name="tasks_feeds")`` in celery_app.py)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from market import services


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
