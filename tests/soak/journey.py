"""What a person does with the stack in a browser (Playwright, Debian's Chromium): sign up, trade on paper,
schedule an order, start auto-trading; and what an admin does: Train now and watch it. Every request the
pages make is recorded, so a test can say which ones left the machine."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.soak.stack import ADMIN_PASSWORD, ADMIN_USER, MARKET, StackRun

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "Obs3rvat0r!soak"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Every page a person or an admin opens (the admin ones after logging in as the admin).
USER_PAGES = ["/login", "/signup", "/home", "/profile", "/trade", "/model", "/api/docs/"]
ADMIN_PAGES = [
    "/admin/",
    "/admin/mlmodel/modelversion/",
    "/admin/mlmodel/trainingrun/",
    "/admin/mlmodel/trainingrun/train-now/",
    "/admin/trading/order/",
    "/admin/trading/scheduledorder/",
]


@dataclass
class Offline:
    """Requests to anything but this machine, and failed page assets, across every page of a context."""

    outside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def watch(self, context: Any) -> None:  # noqa: ANN401
        def on_request(request: Any) -> None:  # noqa: ANN401
            parts = urlsplit(request.url)
            if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
                self.outside.append(request.url)

        def on_response(response: Any) -> None:  # noqa: ANN401
            # A missing asset (script, style, font, icon) is what an offline page looks like.
            if response.status >= 400 and response.request.resource_type not in ("fetch", "xhr", "document"):
                self.failed.append(f"{response.status} {response.url}")

        context.on("request", on_request)
        context.on("response", on_response)

    def watch_page(self, page: Any) -> None:  # noqa: ANN401
        page.on("pageerror", lambda e: self.page_errors.append(f"{page.url}: {e}"))


@dataclass
class JourneyResult:
    username: str = ""
    manual_orders_done: int = 0
    scheduled_fired: bool = False
    training_run_id: int | None = None
    training_state: str = ""
    training_message: str = ""
    training_picked_up_s: float | None = None  # Train now pressed -> an ml worker has it
    training_finished_s: float | None = None
    model_active: bool = False
    model_states: list[str] = field(default_factory=list)  # each state the dashboard showed, in order
    auto_started: bool = False
    notes: list[str] = field(default_factory=list)


def launch(pw: Any) -> Any:  # noqa: ANN401
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def new_context(browser: Any, run: StackRun, offline: Offline) -> Any:  # noqa: ANN401
    context = browser.new_context(
        base_url=run.base_url,
        locale="en-US",
        timezone_id="Asia/Seoul",
        viewport={"width": 1440, "height": 900},
    )
    context.set_default_timeout(60_000)  # a loaded 2-core machine: slow is not the fault looked for
    offline.watch(context)
    return context


def new_page(context: Any, offline: Offline) -> Any:  # noqa: ANN401
    page = context.new_page()
    offline.watch_page(page)
    return page


def sign_up(page: Any, username: str) -> None:  # noqa: ANN401
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


def open_trade(page: Any) -> None:  # noqa: ANN401
    page.goto(f"/trade?market={MARKET}")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("window.__trade && window.__trade.stats.bookPaints > 0")


def paper_buy(page: Any, krw: int = 100_000) -> None:  # noqa: ANN401
    before = page.locator("#history-body tr[data-state=done]").count()
    page.click("#tab-buy")
    page.fill("#buy-amount", str(krw))
    page.click("[data-testid=buy-submit]")
    # Counted in the page (the history re-renders on every push, so a located row can be replaced under it).
    page.wait_for_function(
        "(n) => document.querySelectorAll('#history-body tr[data-state=done]').length > n",
        arg=before,
        timeout=45_000,
    )


def schedule_buy(page: Any, krw: int = 20_000, seconds_ahead: int = 5) -> None:  # noqa: ANN401
    page.click("#tab-scheduled")
    page.fill("#sched-amount", str(krw))
    page.evaluate(
        """(ahead) => { const d = new Date(Date.now() + ahead * 1000);
        const p = (x) => String(x).padStart(2, '0');
        document.querySelector('#sched-at').value =
          `${d.getFullYear()}-${p(d.getMonth()+1)}-${p(d.getDate())}`
          + `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }""",
        seconds_ahead,
    )
    page.click("[data-testid=sched-submit]")
    fired = "#scheduled-body tr[data-state=filled], #scheduled-body tr[data-state=fired]"
    page.wait_for_function("(sel) => document.querySelector(sel) !== null", arg=fired, timeout=60_000)


def user_part(page: Any, result: JourneyResult) -> None:  # noqa: ANN401
    """Sign up, a paper buy, a scheduled order that fires."""
    result.username = "soak" + secrets.token_hex(4)
    sign_up(page, result.username)
    open_trade(page)
    paper_buy(page)
    result.manual_orders_done += 1
    schedule_buy(page)
    result.scheduled_fired = True


def admin_login(page: Any) -> None:  # noqa: ANN401
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def train_now(page: Any, result: JourneyResult, *, epochs: int = 3, splits: int = 2) -> bool:  # noqa: ANN401
    """Press Train now: True when it queued a run of its own; False when one was already going (e.g. the
    stack's own first model), which ``result.training_run_id`` then names."""
    page.goto("/admin/mlmodel/trainingrun/train-now/")
    page.select_option("select[name=market]", MARKET)
    page.fill("input[name=days]", "2")
    page.fill("input[name=epochs]", str(epochs))
    page.fill("input[name=n_splits]", str(splits))
    page.click("[data-testid=train-now-form] input[type=submit]")
    page.wait_for_load_state()
    match = re.search(r"/trainingrun/(\d+)/progress/", page.url)
    if match is None:
        text = page.locator("#content").inner_text()
        result.notes.append(f"Train now refused: {text[:300]!r}")
        if "already" not in text:
            raise AssertionError(f"Train now was refused: {text[:500]}")
        page.goto("/admin/mlmodel/trainingrun/")
        first = page.locator("#result_list tbody tr th a, #result_list tbody tr td.field-id a").first
        match = re.search(r"/trainingrun/(\d+)/", first.get_attribute("href") or "")
        assert match, "no training run listed"
        result.training_run_id = int(match.group(1))
        return False
    result.training_run_id = int(match.group(1))
    result.notes.append(f"Train now queued run {result.training_run_id}")
    return True


def training_progress(page: Any, run_id: int) -> dict[str, Any]:  # noqa: ANN401
    response = page.request.get(f"/admin/mlmodel/trainingrun/{run_id}/progress.json")
    assert response.ok, response.status
    return response.json()


def wait_training(
    page: Any,  # noqa: ANN401
    result: JourneyResult,
    *,
    pressed_at: float,
    pickup_timeout: float,
    finish_timeout: float,
) -> list[float]:
    """Poll the run's progress until it is finished; returns the progress values seen (never decreasing)."""
    assert result.training_run_id is not None
    seen: list[float] = []
    deadline = pressed_at + finish_timeout
    while time.monotonic() < deadline:
        data = training_progress(page, result.training_run_id)
        seen.append(float(data.get("progress") or 0))
        result.training_state = str(data.get("state"))
        result.training_message = str(data.get("message") or "")[:500]
        if result.training_picked_up_s is None and (data.get("picked_up_at") or data.get("started_at")):
            result.training_picked_up_s = time.monotonic() - pressed_at
        if result.training_picked_up_s is None and time.monotonic() - pressed_at > pickup_timeout:
            break
        if data.get("finished") or data.get("state") in ("succeeded", "failed"):
            result.training_finished_s = time.monotonic() - pressed_at
            break
        time.sleep(2.0)
    return seen


def model_state(page: Any) -> str:  # noqa: ANN401
    """The dashboard's model state (collecting, training, not_promoted, active, ...)."""
    response = page.request.get(f"/api/ml/models/state/?market={MARKET}")
    if response.status == 404:  # before the state API: only "active" or not
        active = page.request.get(f"/api/ml/models/active/?market={MARKET}")
        return "active" if active.status == 200 else "none"
    return str(response.json().get("state")) if response.ok else f"http {response.status}"


def start_auto_trading(page: Any, result: JourneyResult) -> None:  # noqa: ANN401
    open_trade(page)
    page.fill("#auto-order-krw", "20000")
    page.locator("#threshold").fill("0")
    page.click("[data-testid=auto-start]")
    page.wait_for_selector("#auto-state:has-text('Running')")
    result.auto_started = True


def visit_every_page(page: Any, paths: list[str]) -> dict[str, int]:  # noqa: ANN401
    """Open each page and let it load its assets; the status of each document."""
    statuses: dict[str, int] = {}
    for path in paths:
        response = page.goto(path, wait_until="load")
        page.wait_for_timeout(1500)  # scripts fetch what they need after load (charts, fonts, data)
        statuses[path] = response.status if response is not None else 0
    return statuses
