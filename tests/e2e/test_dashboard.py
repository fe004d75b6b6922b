"""The product in a real browser against the real stack: sign up, log in, languages, keys, the live dashboard,
a paper buy, a scheduled order that fires, auto-trading, log out; and the dashboard reconnecting by itself
when its WebSocket drops or the server restarts."""

from __future__ import annotations

import re
import secrets
import string
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, screenshot, start_web

pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(170)]

PASSWORD = "Obs3rvat0r!pw"


def _key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def _ladder_text(page: Any) -> str:  # noqa: ANN401
    return page.locator("#ladder-asks").inner_text() + page.locator("#ladder-bids").inner_text()


def _wait_changes(page: Any, read: Any, timeout_ms: int = 10000) -> None:  # noqa: ANN401
    first = read()
    deadline = timeout_ms
    while deadline > 0:
        page.wait_for_timeout(200)
        deadline -= 200
        if read() != first:
            return
    raise AssertionError(f"did not change within {timeout_ms} ms: {first[:200]!r}")


def _sign_up(page: Any, username: str) -> None:  # noqa: ANN401
    page.goto("/signup")
    page.fill("input[name=username]", username)
    page.click("#username-check")
    page.wait_for_selector("#username-status.ok")
    page.fill("input[name=email_local]", username.lower())
    page.select_option("select[name=email_domain]", index=1)
    page.fill("input[name=phone]", "010-1234-5678")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.check("input[name=privacy_consent]")
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))


def _log_out(page: Any) -> None:  # noqa: ANN401
    page.click("[data-testid=logout]")
    page.wait_for_url(re.compile(r"/login"))


def _log_in(page: Any, username: str) -> None:  # noqa: ANN401
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))


def _print_counts() -> None:
    from autotrade.models import AutoTradeDecision, AutoTradeSession
    from mlmodel.models import Prediction
    from trading.models import Order, ScheduledOrder

    print(
        "[e2e] rows:",
        {
            m.__name__: m.objects.count()
            for m in (Prediction, Order, ScheduledOrder, AutoTradeSession, AutoTradeDecision)
        },
    )


def _open_trade(page: Any) -> None:  # noqa: ANN401
    page.goto("/trade")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("window.__trade && window.__trade.stats.bookPaints > 0")
    page.wait_for_selector("#tape-body tr:not(.empty)")


def test_full_user_journey(e2e_model: Any, page: Any, e2e_stack: Stack, artifacts_dir: Path) -> None:  # noqa: ANN401
    username = "e2e" + secrets.token_hex(4)
    try:
        page.goto("/login")
        screenshot(page, artifacts_dir, "login")
        page.goto("/signup")
        screenshot(page, artifacts_dir, "signup")

        # Sign up (logs in), log out, log in again.
        _sign_up(page, username)
        _log_out(page)
        _log_in(page, username)
        screenshot(page, artifacts_dir, "home")

        # Korean and back: the whole page follows the choice.
        page.click("button[name=language][value=ko]")
        page.wait_for_selector("html[lang=ko]")
        assert "거래" in page.locator("nav").inner_text()
        page.goto("/trade")
        page.wait_for_selector("#conn[data-state=open]")
        assert "호가" in page.locator("#book-h").inner_text()
        screenshot(page, artifacts_dir, "trade-ko")
        page.click("button[name=language][value=en]")
        page.wait_for_selector("html[lang=en]")
        assert "Order book" in page.locator("#book-h").inner_text()

        # Save (syntactically valid) Upbit keys the simulator does not know: the check refuses them, and
        # they are stored only once the user ticks "Save these keys anyway"; the secret is never shown.
        page.goto("/profile")
        access, secret = _key(), _key()
        page.fill("input[name=access_key]", access)
        page.fill("input[name=secret_key]", secret)
        page.click("form[action='/profile'] button[type=submit]")
        page.wait_for_selector("[data-testid=key-check][data-status=invalid]")
        page.fill("input[name=access_key]", access)
        page.fill("input[name=secret_key]", secret)
        page.check("input[name=save_anyway]")
        page.click("form[action='/profile'] button[type=submit]")
        page.wait_for_selector("[data-testid=key-summary]")
        assert secret not in page.content()
        screenshot(page, artifacts_dir, "profile")

        # The dashboard is live: the order book and the tape change by themselves.
        _open_trade(page)
        assert page.locator("[data-testid=no-keys-notice]").count() == 0
        _wait_changes(page, lambda: _ladder_text(page))
        _wait_changes(page, lambda: page.locator("#tape-body").inner_text())
        assert re.search(r"\d{2,3}(,\d{3})+", page.locator("#price-now").inner_text())
        assert page.locator("#mode-badge").inner_text().strip() == "PAPER"
        screenshot(page, artifacts_dir, "trade")

        # Keyboard: the order tabs follow the arrow keys, and the focused form is the visible one.
        page.focus("#tab-buy")
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.id") == "tab-sell"
        assert page.locator("#form-sell").is_visible() and not page.locator("#form-buy").is_visible()
        page.keyboard.press("ArrowLeft")
        assert page.locator("#form-buy").is_visible()
        # A ladder level is reachable by keyboard: Enter on it fills the limit price.
        level = page.locator("#ladder-bids tr.lvl:not([hidden])").first
        picked = level.get_attribute("data-price")
        level.focus()
        page.keyboard.press("Enter")
        assert page.locator("#form-limit").is_visible()
        # The live book can move between reading the level and pressing Enter: the filled price is that
        # level's price at the key press, so it is the picked one or a neighbouring level's.
        filled = float(page.input_value("#limit-price"))
        assert filled > 0 and abs(filled - float(picked)) <= float(picked) * 0.002, (filled, picked)
        page.click("#tab-buy")
        assert page.locator("#form-buy").is_visible()

        # Paper buy: balance and history update without reloading the page.
        page.wait_for_function("document.querySelector('#assets-krw').textContent.includes('10,000,000')")
        page.fill("#buy-amount", "100000")
        page.click("[data-testid=buy-submit]")
        page.wait_for_selector("#toasts .toast:has-text('Order placed')")
        page.wait_for_selector("#history-body tr[data-state=done]", timeout=15000)
        page.wait_for_selector("#holdings-body tr[data-currency=BTC]")
        krw = page.locator("#assets-krw").inner_text()
        assert "10,000,000" not in krw and "9,8" in krw  # 100,000 KRW + fee spent
        assert page.locator("[data-testid=buy-form] .form-error").inner_text() == ""

        # A limit order far below the market rests on the book; cancelling it takes it off.
        page.click("#tab-limit")
        page.fill("#limit-price", "100000000")
        page.fill("#limit-volume", "0.0001")
        page.click("[data-testid=limit-submit]")
        page.wait_for_selector("#open-orders-body tr[data-order-id]")
        page.click("[data-testid=order-cancel]")
        page.wait_for_selector("#toasts .toast:has-text('Order cancelled')")
        page.wait_for_selector("#history-body tr[data-state=cancelled]")
        page.wait_for_selector("#open-orders-body tr.empty")
        page.click("#tab-buy")

        # A bad order is refused with the server's message, and nothing is placed.
        page.fill("#buy-amount", "100")
        page.click("[data-testid=buy-submit]")
        page.wait_for_function(
            "document.querySelector('[data-testid=buy-form] .form-error').textContent.length > 0"
        )
        assert page.locator("#history-body tr").count() == 2  # the buy and the cancelled limit order

        # Scheduled order a few seconds ahead: it fires (Celery beat + worker) and the page shows it.
        page.click("#tab-scheduled")
        page.fill("#sched-amount", "20000")
        page.evaluate(
            """() => { const d = new Date(Date.now() + 4000); const p = (x) => String(x).padStart(2, '0');
            document.querySelector('#sched-at').value =
              `${d.getFullYear()}-${p(d.getMonth()+1)}-${p(d.getDate())}`
              + `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }"""
        )
        page.click("[data-testid=sched-submit]")
        page.wait_for_selector("#scheduled-body tr[data-state=pending]")
        page.wait_for_selector(
            "#scheduled-body tr[data-state=filled], #scheduled-body tr[data-state=fired]", timeout=30000
        )
        page.wait_for_selector("#history-body tr[data-state=done] >> nth=1", timeout=15000)
        assert "Scheduled" in page.locator("#history-body tr[data-state=done] >> nth=0").inner_text()
        # A price-triggered sell far above the market stays pending; the reset form shows the fields of its
        # reset choice (date and time, KRW), not the price field of the order just placed.
        page.check("#form-scheduled input[name=side][value=ask]")
        page.fill("#sched-amount", "0.0001")
        page.select_option("#sched-trigger", "price_above")
        page.fill("#sched-price", "999000000")
        page.click("[data-testid=sched-submit]")
        page.wait_for_selector("#scheduled-body tr[data-state=pending]")
        assert page.input_value("#sched-trigger") == "time"
        assert page.is_visible("#sched-at") and not page.is_visible("#sched-price")
        assert page.inner_text("#sched-amount-unit") == "KRW"

        # Auto-trading: start, decisions appear, change the threshold, stop.
        page.fill("#auto-order-krw", "20000")
        page.click("[data-testid=auto-start]")
        page.wait_for_selector("#auto-state:has-text('Running')")
        page.wait_for_selector("#decision-log li.decision", timeout=40000)
        assert e2e_model.label in page.locator("#model-version").inner_text()
        page.locator("#threshold").fill("0.03")
        assert page.locator("#threshold-out").inner_text() == "0.03%"
        page.click("[data-testid=threshold-apply]")
        page.wait_for_selector("#toasts .toast:has-text('0.03%')")
        page.click("[data-testid=auto-stop]")
        page.wait_for_selector("#auto-state:has-text('Stopped')")

        _log_out(page)
        page.goto("/trade")
        page.wait_for_url(re.compile(r"/login"))
        assert not page.errors, page.errors
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure-journey.png"), full_page=True)
        print(e2e_stack.all_logs())
        _print_counts()
        raise


def test_dashboard_reconnects_by_itself(
    page: Any,
    e2e_stack: Stack,
    artifacts_dir: Path,  # noqa: ANN401
    django_user_model: Any,
) -> None:  # noqa: ANN401
    django_user_model.objects.create_user(username="reconnect1", password=PASSWORD, email="r@example.com")
    try:
        _log_in(page, "reconnect1")

        # 0. Without the chart library (a machine without npm, a blocked file) the page still draws its chart.
        page.route("**/static/vendor/**", lambda route: route.abort())
        _open_trade(page)
        page.wait_for_selector("#chart[data-renderer=canvas] canvas")
        assert "chart library" in page.locator("#chart-note").inner_text()
        page.wait_for_timeout(1500)  # a few live points
        page.locator(".panel-chart").screenshot(path=str(artifacts_dir / "chart-fallback.png"))
        page.unroute("**/static/vendor/**")
        _open_trade(page)
        page.wait_for_selector("#chart[data-renderer=lightweight-charts]")

        # Another market from the picker: the book, price and address follow, without a reload.
        btc_price = page.locator("#price-now").inner_text()
        page.select_option("#market-select", "KRW-ETH")
        page.wait_for_url(re.compile(r"market=KRW-ETH"))
        page.wait_for_function(
            "document.querySelector('#price-market').textContent === 'KRW-ETH'"
            " && document.querySelector('#price-now').textContent !== '–'"
        )
        page.wait_for_function(
            "window.__trade.state.ticker && window.__trade.state.ticker.market === 'KRW-ETH'"
        )
        assert page.locator("#price-now").inner_text() != btc_price
        _wait_changes(page, lambda: _ladder_text(page))
        page.select_option("#market-select", "KRW-BTC")
        page.wait_for_function(
            "window.__trade.state.ticker && window.__trade.state.ticker.market === 'KRW-BTC'"
        )

        # 1. The socket dies under the page (proxy reset, laptop sleep): it comes back without a reload.
        connects = page.evaluate("window.__trade.marketSocket.connects")
        page.evaluate("window.__trade.marketSocket.ws.close()")
        page.wait_for_function(f"window.__trade.marketSocket.connects > {connects}")
        page.wait_for_selector("#conn[data-state=open]")
        _wait_changes(page, lambda: _ladder_text(page))

        # 2. The server goes away: the page says it is reconnecting (with backoff), then recovers.
        e2e_stack.procs["web"].terminate()
        e2e_stack.procs["web"].wait(timeout=15)
        page.wait_for_selector("#conn[data-state=reconnecting]")
        assert "Reconnecting" in page.locator("#conn").inner_text()
        page.screenshot(path=str(artifacts_dir / "trade-reconnecting.png"))
        with start_web(e2e_stack, e2e_stack.web_port) as web:
            e2e_stack.procs["web"] = web
            page.wait_for_selector("#conn[data-state=open]", timeout=40000)
            _wait_changes(page, lambda: _ladder_text(page))
            _wait_changes(page, lambda: page.locator("#tape-body").inner_text())
            page.wait_for_function("window.__trade.userSocket.state === 'open'", timeout=40000)
            assert not page.locator("#stale-notice").is_visible()

            # 3. The feed stops (market closed, collector down): the page says the data is stale.
            e2e_stack.procs["collector"].terminate()
            page.wait_for_selector("#stale-notice:not([hidden])", timeout=20000)
            assert "No market data" in page.locator("#stale-notice").inner_text()
            assert page.locator("#conn").get_attribute("data-state") == "open"  # connected, but nothing comes
            page.screenshot(path=str(artifacts_dir / "trade-stale.png"))
        assert not page.errors, page.errors
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure-reconnect.png"), full_page=True)
        print(e2e_stack.all_logs())
        raise
