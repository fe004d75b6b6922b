"""Fixtures of the market feeds tests: a fresh in-process channel layer, fake Upbit REST, clean cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from channels.layers import channel_layers

from tests.market.feeds.fakes import FakeHttp, fake_http, install_upbit


@pytest.fixture(autouse=True)
def _fresh_layer_and_cache(settings) -> Iterator[None]:  # noqa: ANN001
    """A new in-process channel layer and a cache namespace of its own per test (never FLUSHDB a shared
    Redis: other parts of a CI run use it)."""
    channel_layers.backends.clear()
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    settings.CACHES = {alias: {**conf, "KEY_PREFIX": prefix} for alias, conf in settings.CACHES.items()}
    yield
    channel_layers.backends.clear()


@pytest.fixture
def fake_upbit(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttp]:  # noqa: ANN001
    """A local Upbit quotation fake; also exported to child processes (the ASGI server) via the env."""
    with fake_http() as fake:
        install_upbit(fake)
        settings.UPBIT_REST_URL = fake.url
        monkeypatch.setenv("UPBIT_REST_URL", fake.url)
        yield fake
