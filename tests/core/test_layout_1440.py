"""Layout at a common laptop width (1440 x 900), in English and Korean, in headless Chromium.

No table needs horizontal scrolling: the /trade order history (its "State" column was cut off), the /model
comparison table and the /profile holdings; the holdings' figures line up under their headings; "Send to my
e-mail" is a styled button; Korean badges ("아니요") do not wrap one letter per line. Screenshots go to the
test artifacts for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from market.upbit_sim.server import SimConfig, SimulatorThread
from mlmodel.models import ModelStatus, ModelVersion
from tests.accounts.factories import PASSWORD, UserFactory
from trading import services

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(180)]

MARKET = "KRW-BTC"
WIDTH, HEIGHT = 1440, 900

# Every table on the page, with how far its content overflows its box (0 when it fits).
OVERFLOWS_JS = """
() => [...document.querySelectorAll('main table')].filter((t) => t.offsetParent !== null).map((t) => {
  const box = t.closest('.table-wrap') || t.parentElement;
  return {id: t.dataset.testid || t.id || t.className, over: Math.max(t.scrollWidth - box.clientWidth,
          box.scrollWidth - box.clientWidth)};
})
"""


@pytest.fixture(autouse=True)
def _sim_upbit(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[SimulatorThread]:  # noqa: ANN401
    """Autouse, so the simulator runs before the ASGI server starts and the server inherits its URL."""
    with SimulatorThread(SimConfig(markets=[MARKET], seed=5, tick_ms=50)) as sim:
        monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
        settings.UPBIT_REST_URL = sim.rest_url
        yield sim


def _model_version() -> ModelVersion:
    """An active version with a full comparison table (as training stores it), without training one."""

    def row(mse: float, beats: bool | None) -> dict[str, Any]:
        return {
            "val": {"mse": mse},
            "test": {"mse": mse * 1.1, "corr": 0.123, "dir_acc": 0.5432, "f1_moves": 0.412},
            "backtest": {
                "net_pnl": -1_234_567.0,
                "n_round_trips": 1234,
                "fees": 12_345_678.0,
                "max_drawdown": 2_345_678.0,
                "buy_hold_pnl": -3_456_789.0,
            },
            "beats_persistence_on_validation": beats,
        }

    summary = {
        "lstm": row(5.4e-6, False),
        "incumbent": row(5.5e-6, True),
        "linear_ofi": row(5.6e-6, False),
        "gbt": row(5.7e-6, False),
        "persistence": row(7.9e-6, None),
    }
    return ModelVersion.objects.create(
        name="lstm",
        market=MARKET,
        version=1,
        status=ModelStatus.ACTIVE,
        horizon_s=10.0,
        feature_version="ob-features-1",
        promoted_at=timezone.now(),
        report={"evaluation": {"summary": summary, "config": {"horizon_s": 10.0, "move_threshold": 0.001}}},
        artifact="models/none.pt",
    )


def _orders(user: Any) -> None:  # noqa: ANN401
    # A cancelled limit order far below the market ("0.00000000 / 0.00100000"), a filled market buy and sell.
    order = services.order_place(
        user=user,
        market=MARKET,
        side="bid",
        ord_type="limit",
        price=Decimal(50_000_000),
        volume=Decimal("0.001"),
    )
    services.order_cancel(user=user, order_id=order.pk)
    services.order_place(user=user, market=MARKET, side="bid", ord_type="price", price=Decimal(1_000_000))
    services.order_place(user=user, market=MARKET, side="ask", ord_type="market", volume=Decimal("0.001"))
    # Open: a resting limit order and a pending price-triggered order, each row with its Cancel button (the
    # open-orders table overflowed by 22 px at 1440 with one such row).
    services.order_place(
        user=user,
        market=MARKET,
        side="bid",
        ord_type="limit",
        price=Decimal(140_000_000),
        volume=Decimal("0.001"),
    )
    services.scheduled_order_create(
        user=user,
        market=MARKET,
        side="bid",
        ord_type="price",
        price=Decimal(20_000),
        trigger_type="price_below",
        trigger_price=Decimal(100_000_000),
    )


def _log_in(page: Any, username: str) -> None:  # noqa: ANN401
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))


def _no_overflow(page: Any, name: str) -> None:  # noqa: ANN401
    overflows = page.evaluate(OVERFLOWS_JS)
    assert overflows, f"{name}: no table on the page"
    assert all(o["over"] <= 0 for o in overflows), f"{name}: tables wider than their box: {overflows}"


@pytest.mark.parametrize("language", ["en", "ko"])
def test_pages_fit_1440_without_horizontal_scrolling(page: Any, artifacts_dir: Any, language: str) -> None:  # noqa: ANN401
    user = UserFactory(preferred_language=language)
    _orders(user)
    _model_version()
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    _log_in(page, user.username)
    page.wait_for_selector(f"html[lang={language}]")

    page.goto(f"/trade?market={MARKET}")
    page.wait_for_selector("#history-body tr[data-order-id]")
    page.wait_for_function("document.querySelectorAll('#history-body tr[data-order-id]').length >= 3")
    page.screenshot(path=str(artifacts_dir / f"layout-1440-trade-{language}.png"), full_page=True)
    _no_overflow(page, "/trade")
    # The 24 h volume in full digits with separators ("1,160 BTC"), never compact units ("1.16천 BTC").
    page.wait_for_function("/\\d/.test(document.querySelector('#price-vol').textContent)")
    assert re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d+)? BTC", page.locator("#price-vol").inner_text().strip())
    page.wait_for_function("document.querySelector('#fx-source').textContent.length > 0")
    fx_note = page.locator("#fx-source").inner_text()
    words = ("환율",) if language == "ko" else ("Exchange rate", "daily reference rate")
    assert "FX:" not in fx_note and any(w in fx_note for w in words), fx_note
    state = page.locator("[data-testid=order-history] tbody tr[data-order-id] td.state").first
    box, wrap = state.bounding_box(), page.locator("[data-testid=order-history]").bounding_box()
    assert box["x"] + box["width"] <= wrap["x"] + wrap["width"] + 1  # the State column is in view

    page.goto(f"/model?market={MARKET}")
    page.wait_for_selector("[data-testid=model-comparison] table")
    page.screenshot(path=str(artifacts_dir / f"layout-1440-model-{language}.png"), full_page=True)
    _no_overflow(page, "/model")
    for badge in page.locator("[data-testid=model-comparison] .badge").all():
        height = badge.bounding_box()["height"]
        assert height < 30, f"a badge wraps: {badge.inner_text()!r} is {height}px tall"

    page.goto("/profile")
    page.wait_for_selector("[data-testid=profile-holdings] table")
    page.screenshot(path=str(artifacts_dir / f"layout-1440-profile-{language}.png"), full_page=True)
    _no_overflow(page, "/profile")
    holdings = page.locator("[data-testid=profile-holdings] table")
    for col in (2, 3):  # quantity and average price: the figure ends where its heading ends
        head = holdings.locator(f"thead th:nth-child({col})").bounding_box()
        cell = holdings.locator(f"tbody tr:first-child td:nth-child({col})").bounding_box()
        assert abs((head["x"] + head["width"]) - (cell["x"] + cell["width"])) <= 1
    button = page.get_by_test_id("send-report")
    assert "btn" in (button.get_attribute("class") or "").split()
    assert button.evaluate("(b) => getComputedStyle(b).cursor") == "pointer"
