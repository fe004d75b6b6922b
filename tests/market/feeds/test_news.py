"""News from local RSS and Atom feeds: stored once (dedup), newest first, a broken feed breaks nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from market import services
from market.models import NewsItem
from tests.market.feeds.fakes import FakeHttp, fake_http

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Coin Daily</title><link>https://coin.example/</link>
<item><title>Bitcoin tops $100,000</title><link>https://coin.example/a?utm_source=rss</link>
  <guid>https://coin.example/a</guid><pubDate>Mon, 24 Nov 2026 10:00:00 GMT</pubDate>
  <description>&lt;p&gt;Price &lt;b&gt;record&lt;/b&gt;&lt;/p&gt;</description></item>
<item><title>ETF inflows slow</title><link>https://coin.example/b</link>
  <pubDate>Mon, 24 Nov 2026 08:00:00 GMT</pubDate></item>
<item><title>Miners sell reserves</title><link>https://coin.example/c</link>
  <pubDate>Mon, 24 Nov 2026 12:00:00 GMT</pubDate></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Block Wire</title><id>urn:blockwire</id>
<updated>2026-11-24T11:00:00Z</updated>
<entry><title>BITCOIN TOPS $100,000!</title><id>urn:blockwire:1</id>
  <link href="https://wire.example/btc-100k"/><updated>2026-11-24T10:05:00Z</updated>
  <summary>Syndicated copy of the same story.</summary></entry>
<entry><title>Hashrate hits a new high</title><id>urn:blockwire:2</id>
  <link href="https://wire.example/hashrate"/><published>2026-11-24T11:00:00Z</published></entry>
</feed>"""

NOW = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def feed_server(settings) -> Iterator[FakeHttp]:  # noqa: ANN001
    with fake_http() as fake:
        fake.raw("/rss.xml", RSS, "application/rss+xml")
        fake.raw("/atom.xml", ATOM, "application/atom+xml")
        fake.raw("/broken.xml", b"<html><body>502 Bad Gateway", "text/html")
        fake.routes["/down.xml"] = (500, "text/plain", b"down")
        settings.NEWS_FEEDS = [
            f"{fake.url}/{name}" for name in ("rss.xml", "broken.xml", "atom.xml", "down.xml")
        ]
        yield fake


@pytest.mark.django_db
def test_refresh_stores_each_story_once_newest_first_despite_broken_feeds(
    feed_server: FakeHttp,
    django_assert_num_queries,  # noqa: ANN001
) -> None:
    result = services.news_refresh(now=NOW)
    assert result.feeds_ok == 2
    assert set(result.feeds_failed) == {f"{feed_server.url}/broken.xml", f"{feed_server.url}/down.xml"}
    # "Bitcoin tops $100,000" (RSS) and "BITCOIN TOPS $100,000!" (Atom) are one story.
    assert result.created == 4 and result.duplicates == 1

    with django_assert_num_queries(1):  # one query, then served from the cache
        body = APIClient().get("/api/market/news/").json()
        assert APIClient().get("/api/market/news/").json() == body
    assert [item["title"] for item in body] == [
        "Miners sell reserves",
        "Hashrate hits a new high",
        "Bitcoin tops $100,000",
        "ETF inflows slow",
    ]
    top = body[2]
    assert top["published_at"] == "2026-11-24T10:00:00Z"
    assert top["source"] == "Coin Daily" and top["summary"] == "Price record"
    assert top["link"] == "https://coin.example/a?utm_source=rss"


@pytest.mark.django_db
def test_refreshing_again_adds_nothing_and_a_republished_link_is_recognised(feed_server: FakeHttp) -> None:
    services.news_refresh(now=NOW)
    # The same article again, with a new guid and a tracking parameter on its link.
    feed_server.raw(
        "/rss.xml",
        RSS.replace(b"<guid>https://coin.example/a</guid>", b"<guid>x-1</guid>").replace(
            b"https://coin.example/b", b"https://coin.example/b?utm_medium=x"
        ),
    )
    again = services.news_refresh(now=NOW)
    assert again.created == 0
    assert NewsItem.objects.count() == 4


@pytest.mark.django_db
def test_refresh_news_task_is_registered_under_its_beat_name_and_runs(
    feed_server: FakeHttp, settings
) -> None:  # noqa: ANN001
    from celery_app import app

    app.loader.import_default_modules()
    assert "market.tasks.refresh_news" in app.tasks
    assert settings.CELERY_BEAT_SCHEDULE["market-refresh-news"]["task"] == "market.tasks.refresh_news"
    outcome = app.tasks["market.tasks.refresh_news"].apply().get(timeout=30)
    assert outcome["created"] == 4 and outcome["feeds_failed"] == 2


@pytest.mark.django_db
def test_news_older_than_the_retention_is_pruned(feed_server: FakeHttp, settings) -> None:  # noqa: ANN001
    settings.NEWS_KEEP_DAYS = 1
    services.news_refresh(now=NOW)
    result = services.news_refresh(now=NOW + dt.timedelta(hours=11))
    # Only items published from 2026-11-24 11:00 on survive a 1-day window ending 2026-11-25 11:00.
    assert sorted(NewsItem.objects.values_list("title", flat=True)) == [
        "Hashrate hits a new high",
        "Miners sell reserves",
    ]
    assert result.pruned == 2


@pytest.mark.django_db
def test_news_api_validates_limit() -> None:
    response = APIClient().get("/api/market/news/?limit=0")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["limit"]


@pytest.mark.django_db
def test_a_dead_feed_is_reported_when_it_goes_down_and_when_it_is_back(feed_server: FakeHttp, caplog) -> None:  # noqa: ANN001
    """Offline, the news refresh (every 10 minutes) warned about every dead feed on every run."""
    from django.core.cache import cache

    cache.clear()
    with caplog.at_level("DEBUG", logger="market.services"):
        for _ in range(3):
            services.news_refresh(now=NOW)
        feed_server.routes["/down.xml"] = (200, "application/rss+xml", RSS)
        services.news_refresh(now=NOW)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    down = f"{feed_server.url}/down.xml"
    assert sum(down in w and "unavailable" in w for w in warnings) == 1
    assert sum(f"{feed_server.url}/broken.xml" in w for w in warnings) == 1
    assert warnings[-1] == f"feed news:{down} is back"
