"""Fixtures of the market feeds tests: a fresh in-process channel layer, fake Upbit REST, clean cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from channels.layers import channel_layers
from django.core.cache import cache

from tests.market.feeds.fakes import FakeHttp, fake_http, install_upbit


@pytest.fixture(autouse=True)
def _fresh_layer_and_cache() -> Iterator[None]:
    channel_layers.backends.clear()
    cache.clear()
    yield
    channel_layers.backends.clear()
    cache.clear()


@pytest.fixture
def fake_upbit(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttp]:  # noqa: ANN001
    """A local Upbit quotation fake; also exported to child processes (the ASGI server) via the env."""
    with fake_http() as fake:
        install_upbit(fake)
        settings.UPBIT_REST_URL = fake.url
        monkeypatch.setenv("UPBIT_REST_URL", fake.url)
        yield fake
