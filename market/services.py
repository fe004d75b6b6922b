"""Market services (HackSoft style: writes go through these keyword-only functions): day-file uploads
(implemented in market/uploads.py, re-exported here) and the dashboard news refresh."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.utils import timezone

from market import feeds
from market.models import NewsItem
from market.outages import source_down_note, source_up_note
from market.uploads import (  # noqa: F401 - re-exported services
    DayUploadError,
    UploadSummary,
    day_file_upload,
    day_files_apply_retention,
    day_files_upload_finished,
    day_upload_key,
    sample_import,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------
# News (dashboard feeds)
# ------------------------------------------------------------------------------------------------------


@dataclass
class NewsRefreshResult:
    feeds_ok: int = 0
    feeds_failed: dict[str, str] = field(default_factory=dict)
    created: int = 0
    duplicates: int = 0
    pruned: int = 0


def news_refresh(*, feed_urls: list[str] | None = None, now: dt.datetime | None = None) -> NewsRefreshResult:
    """Fetch every configured RSS/Atom feed, store new items once (by guid/link and normalised title).

    A broken or unreachable feed is recorded in the result and logged; the others are still stored.
    Safe to run twice at once: the unique ``guid_key`` makes a concurrent duplicate insert a no-op.
    """

    urls = list(settings.NEWS_FEEDS if feed_urls is None else feed_urls)
    now = now or timezone.now()
    result = NewsRefreshResult()
    if not urls:
        return result
    with (
        httpx.Client(
            timeout=settings.FEEDS_HTTP_TIMEOUT,
            trust_env=False,
            headers={"User-Agent": "OBservator/1.0 (+news)"},
        ) as client,
        ThreadPoolExecutor(max_workers=min(4, len(urls)), thread_name_prefix="news") as pool,
    ):
        parsed = list(pool.map(lambda url: feeds.fetch_feed(client, url, now=now), urls))

    entries: list[feeds.NewsEntry] = []
    for feed in parsed:
        if feed.error:
            result.feeds_failed[feed.url] = feed.error
            source_down_note(key=f"news:{feed.url}", reason=feed.error, logger=logger)
        else:
            source_up_note(key=f"news:{feed.url}", logger=logger)
            result.feeds_ok += 1
            entries.extend(feed.entries)

    cutoff = now - dt.timedelta(days=settings.NEWS_KEEP_DAYS)
    unique = feeds.dedupe(entries)
    result.duplicates = len(entries) - len(unique)
    unique = [e for e in unique if e.published_at >= cutoff]  # older than the retention: never stored
    if unique:
        link_keys = {e.guid_key: feeds.sha1(feeds.normalise_link(e.link)) for e in unique}
        seen_keys = set(
            NewsItem.objects.filter(guid_key__in=[*link_keys, *link_keys.values()]).values_list(
                "guid_key", flat=True
            )
        )
        seen_keys |= set(
            NewsItem.objects.filter(link_key__in=list(link_keys.values())).values_list("link_key", flat=True)
        )
        seen_titles = set(
            NewsItem.objects.filter(title_key__in=[e.title_key for e in unique]).values_list(
                "title_key", flat=True
            )
        )
        for entry in unique:
            link_key = link_keys[entry.guid_key]
            if entry.guid_key in seen_keys or link_key in seen_keys or entry.title_key in seen_titles:
                result.duplicates += 1
                continue
            try:
                with transaction.atomic():
                    NewsItem.objects.create(
                        guid_key=entry.guid_key,
                        link_key=link_key,
                        title_key=entry.title_key,
                        title=entry.title,
                        link=entry.link,
                        source=entry.source,
                        feed_url=entry.feed_url,
                        summary=entry.summary,
                        published_at=entry.published_at,
                    )
            except IntegrityError:  # stored meanwhile by a concurrent refresh
                result.duplicates += 1
                continue
            result.created += 1

    result.pruned, _ = NewsItem.objects.filter(published_at__lt=cutoff).delete()
    if result.created or result.pruned:
        _news_version_bump()
    return result


def _news_version_bump() -> None:
    # market.selectors.news_list caches per version: a new version makes every cached list miss at once.
    # The shared cache: the worker bumps it, the web server reads it (separate processes without Redis).
    shared = caches["shared"]
    try:
        shared.incr("news:version")
    except ValueError:
        shared.set("news:version", 1, None)
