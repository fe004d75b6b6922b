"""A session deleted server-side while /trade is open: the open /ws/user/ socket is closed with 4401 within
the server's re-check interval, the page says "session expired" once (notice and connection badge) and stops
reconnecting. Headless Chromium against the real ASGI server (uvicorn) and the Upbit simulator."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.sessions.models import Session

from market.upbit_sim.server import SimConfig, SimulatorThread
from tests.accounts.factories import PASSWORD, UserFactory
from tests.browser import page  # noqa: F401 - the plain page on asgi_server, not the e2e stack's

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(180)]

MARKET = "KRW-BTC"
# Counts every WebSocket the page opens, by path (attempts, not only successful opens).
COUNT_SOCKETS = """
window.__wsOpened = {};
const RealWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const path = new URL(url).pathname;
  window.__wsOpened[path] = (window.__wsOpened[path] || 0) + 1;
  return protocols === undefined ? new RealWebSocket(url) : new RealWebSocket(url, protocols);
};
window.WebSocket.prototype = RealWebSocket.prototype;
Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
"""


@pytest.fixture(autouse=True)
def _sim_upbit(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[SimulatorThread]:  # noqa: ANN401
    """Autouse, so the simulator runs before the ASGI server starts and the server inherits its URL."""
    with SimulatorThread(SimConfig(markets=[MARKET], seed=5, tick_ms=50)) as sim:
        monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
        settings.UPBIT_REST_URL = sim.rest_url
        yield sim


def _user_sockets(pg: Any) -> int:  # noqa: ANN401
    return int(pg.evaluate("window.__wsOpened['/ws/user/'] || 0"))


def test_deleted_session_shows_session_expired_once_and_stops_retrying(page: Any) -> None:  # noqa: ANN401, F811
    expect = playwright_sync.expect
    user = UserFactory()
    page.add_init_script(COUNT_SOCKETS)
    page.goto("/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))
    page.goto(f"/trade?market={MARKET}")
    page.wait_for_function("window.__trade && window.__trade.userSocket.state === 'open'")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    opened_before = _user_sockets(page)
    assert opened_before == 1

    deleted, _ = Session.objects.all().delete()  # the operator (or a logout elsewhere) ends the session
    assert deleted >= 1
    start = time.monotonic()
    notice = page.get_by_test_id("session-notice")
    expect(notice).to_be_visible(timeout=15_000)
    noticed_after = time.monotonic() - start
    expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
    expect(page.locator("#conn .conn-text")).to_have_text(re.compile("session", re.IGNORECASE))
    assert page.evaluate("window.__trade.userSocket.stopped") is True

    # Wait past the socket's retry backoff: no reconnect storm, one notice, the badge stays "expired" even
    # though the public market socket keeps streaming.
    page.wait_for_timeout(8_000)
    retries = _user_sockets(page) - opened_before
    print(f"session expiry: noticed after {noticed_after:.1f} s, {retries} reconnect attempts")
    assert retries <= 1
    assert page.get_by_test_id("session-notice").count() == 1
    expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
