"""The /trade page in headless Chromium against the real ASGI server and the Upbit simulator: the small faults
of the first walk through the product (issue 12, section 7), each seen as a user sees it.

- a cancelled limit order reads as what it was (limit price, executed / ordered volume, "Cancelled");
- the profit threshold goes to 5 %, and a value applied while stopped survives a reload;
- stopping auto-trading says so once (the API answer and the socket push both arrive);
- a refused limit order's error goes away when the form is edited or left.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from autotrade.models import AutoTradeSession
from autotrade.selectors import autotrade_threshold_get
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests.accounts.factories import PASSWORD, UserFactory
from trading import services

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(180)]

MARKET = "KRW-BTC"


@pytest.fixture(autouse=True)
def _sim_upbit(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[SimulatorThread]:  # noqa: ANN401
    """Autouse, so the simulator runs before the ASGI server starts and the server inherits its URL."""
    with SimulatorThread(SimConfig(markets=[MARKET], seed=5, tick_ms=50)) as sim:
        monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
        settings.UPBIT_REST_URL = sim.rest_url
        yield sim


def _log_in(page: Any, username: str) -> None:  # noqa: ANN401
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))


def _open_trade(page: Any) -> None:  # noqa: ANN401
    page.goto(f"/trade?market={MARKET}")
    page.wait_for_function("window.__trade && window.__trade.userSocket.state === 'open'")


def test_small_faults_of_the_first_walk_stay_fixed(page: Any, artifacts_dir: Any) -> None:  # noqa: ANN401
    user = UserFactory()
    expect = playwright_sync.expect
    # A limit order far below the market, cancelled before anything filled.
    order = services.order_place(
        user=user,
        market=MARKET,
        side="bid",
        ord_type="limit",
        price=Decimal(50_000_000),
        volume=Decimal("0.001"),
    )
    services.order_cancel(user=user, order_id=order.pk)
    # A running session to stop (started directly: the page's Stop needs no model).
    AutoTradeSession.objects.create(
        user=user,
        market=MARKET,
        mode="paper",
        running_key=MARKET,
        threshold=Decimal("0.0005"),
        order_krw=Decimal(50_000),
    )
    _log_in(page, user.username)
    _open_trade(page)

    # 1. The cancelled limit order shows its price, executed / ordered volume and state.
    row = page.locator(f"#history-body tr[data-order-id='{order.pk}']")
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.locator("[data-col=price]")).to_have_text("50,000,000")
    expect(row.locator("[data-col=volume]")).to_have_text("0.00000000 / 0.00100000")
    expect(row).to_contain_text("Cancelled")

    # 2. Stop: one toast, also after the socket's push of the stopped session has arrived.
    expect(page.locator("#auto-state")).to_have_text("Running")
    page.evaluate(
        """() => {
          const auto = window.__trade.auto, original = auto.onEvent.bind(auto);
          window.__sessionPushes = [];
          auto.onEvent = (kind, data) => {
            if (data && data.session) window.__sessionPushes.push(data.session.state);
            original(kind, data);
          };
        }"""
    )
    page.click("[data-testid=auto-stop]")
    expect(page.locator("#auto-state")).to_have_text("Stopped")
    page.wait_for_function("window.__sessionPushes.includes('stopped')")
    toasts = page.locator("#toasts .toast", has_text="Auto-trading stopped")
    expect(toasts).to_have_count(1)
    expect(toasts.first).to_have_text("Auto-trading stopped.")

    # 3. The threshold goes up to 5 %; 0.30 % applied while stopped is kept across a reload.
    slider = page.locator("#threshold")
    assert (slider.get_attribute("min"), slider.get_attribute("max"), slider.get_attribute("step")) == (
        "0",
        "5",
        "0.01",
    )
    slider.fill("0.3")
    expect(page.locator("#threshold-out")).to_have_text("0.30%")
    page.click("[data-testid=threshold-apply]")
    expect(page.locator("#toasts .toast", has_text="0.30%")).to_have_count(1)
    assert autotrade_threshold_get(user=user) == Decimal("0.003")
    slider.fill("5")
    expect(page.locator("#threshold-out")).to_have_text("5.00%")
    _open_trade(page)
    expect(page.locator("#threshold-out")).to_have_text("0.30%")
    assert page.input_value("#threshold") == "0.3"

    # 4. A price off the tick is refused; the message goes once the form is edited, or left.
    page.click("#tab-limit")
    error = page.locator("[data-testid=limit-form] .form-error")
    page.fill("#limit-price", "50000001")
    page.fill("#limit-volume", "0.001")
    page.click("[data-testid=limit-submit]")
    expect(error).not_to_have_text("")
    page.screenshot(path=str(artifacts_dir / "trade-limit-tick-error.png"), full_page=True)
    page.fill("#limit-price", "50000000")
    expect(error).to_have_text("")
    page.fill("#limit-price", "50000001")
    page.click("[data-testid=limit-submit]")
    expect(error).not_to_have_text("")
    page.click("#tab-buy")
    page.click("#tab-limit")
    expect(error).to_have_text("")
    page.screenshot(path=str(artifacts_dir / "trade-small-faults.png"), full_page=True)
