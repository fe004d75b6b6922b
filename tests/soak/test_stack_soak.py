"""The stack as launched (``python3 dev.py run --demo``), used for a simulated hour by a person and an admin:
the test that would have caught issue 12. Embedded defaults (SQLite, filesystem/embedded broker, in-memory
layer), and Redis when REDIS_URL is set.

It checks what a person would notice: processes restarting, a market that drifts apart, pages that need the
internet, a console that scrolls, errors in the log, Train now that never starts, and processes left behind
after Ctrl-C. Every check is collected, so a failing run names all of its faults at once.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.soak import journey
from tests.soak.stack import running_stack

pytestmark = [pytest.mark.soak, pytest.mark.live, pytest.mark.e2e, pytest.mark.timeout(900)]

SPEED = float(os.environ.get("SOAK_SPEED", "30"))  # simulated seconds per wall second
SIM_SECONDS = 3600.0  # at least one simulated hour
SPREAD_MEDIAN_MAX_TICKS = 2.0
VOL_BAND = (0.5, 2.0)  # x the target: one simulated hour gives ~60 one-minute returns, a loose estimate
LOG_LINES_PER_MIN_MAX = 30.0  # after start-up: warnings, errors and rare state changes only
TRAIN_PICKUP_S = 120.0  # Train now -> an ml worker has the run (or the run says why not)
TRAIN_FINISH_S = 300.0
AUTO_ORDER_WAIT_S = 60.0
SOAK_REDIS_DB = 12  # a Redis database of its own (e2e uses 13)
TRAIN_AFTER_SIM_S = 1800.0


def _wait(predicate: Any, timeout: float) -> None:  # noqa: ANN401
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not met within {timeout:.0f}s")
        time.sleep(1)


def _checks(
    run: Any,  # noqa: ANN401
    result: journey.JourneyResult,
    offline: journey.Offline,
    stop: Any,  # noqa: ANN401
    expected_vol: float | None,
) -> list[str]:
    failures: list[str] = []
    console = run.console_figures(until_wall=run.stopped_wall)
    book = run.book_figures()
    if console.restarts:
        failures.append(f"{len(console.restarts)} process restart(s): {console.restarts[:5]}")
    if console.errors:
        failures.append(f"{len(console.errors)} ERROR/CRITICAL/Traceback line(s): {console.errors[:5]}")
    if console.lines_per_min > LOG_LINES_PER_MIN_MAX:
        failures.append(
            f"console: {console.lines_per_min:.0f} lines/min after start-up "
            f"(max {LOG_LINES_PER_MIN_MAX:.0f}); "
            f"{console.lines_total} lines, {console.bytes_total / 1e6:.1f} MB in all"
        )
    if book.sim_hours < SIM_SECONDS / 3600 * 0.95:
        failures.append(f"only {book.sim_hours:.2f} simulated hours covered (book samples: {book.samples})")
    if not book.spread_median <= SPREAD_MEDIAN_MAX_TICKS:
        failures.append(
            f"spread median {book.spread_median:.1f} ticks (max {SPREAD_MEDIAN_MAX_TICKS:g}); p99 "
            f"{book.spread_p99:.1f}, first sixth {book.spread_first_sixth:.1f}, last sixth "
            f"{book.spread_last_sixth:.1f}, max {book.spread_max:.0f}"
        )
    if expected_vol is None:
        failures.append("the simulator's signal strength has no calibrated volatility (docs/simulator.md)")
    elif book.vol is None or not VOL_BAND[0] * expected_vol <= book.vol <= VOL_BAND[1] * expected_vol:
        failures.append(f"one-minute volatility {book.vol} outside {VOL_BAND} x {expected_vol}")
    if offline.outside:
        failures.append(f"pages reached outside hosts: {sorted(set(offline.outside))[:8]}")
    if offline.failed:
        failures.append(f"page assets failed: {sorted(set(offline.failed))[:8]}")
    if offline.page_errors:
        failures.append(f"script errors in pages: {offline.page_errors[:5]}")
    if result.training_picked_up_s is None and result.training_state == "queued":
        failures.append(f"Train now: run {result.training_run_id} still queued after {TRAIN_PICKUP_S:.0f}s")
    elif result.training_state not in ("succeeded", "failed"):
        failures.append(
            f"Train now: run {result.training_run_id} not finished in {TRAIN_FINISH_S:.0f}s "
            f"(state {result.training_state!r}, {result.training_message!r})"
        )
    elif result.training_state == "failed" and not result.training_message:
        failures.append(f"Train now: run {result.training_run_id} failed without saying why")
    if stop.returncode is None:
        failures.append("the launcher did not exit within 60 s of Ctrl-C")
    if stop.alive_at_launcher_exit:
        failures.append(f"the launcher exited before these stopped: {stop.alive_at_launcher_exit}")
    if stop.survivors:
        failures.append(f"processes left after Ctrl-C: {stop.survivors}")
    return failures


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_the_stack_as_launched_holds_for_a_simulated_hour_of_use(
    broker: str, tmp_path: Path, artifacts_dir: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(journey.CHROMIUM).exists():
        pytest.skip(f"{journey.CHROMIUM} is missing (Debian package 'chromium')")
    redis_url = None
    if broker == "redis":
        if not os.environ.get("REDIS_URL"):
            pytest.skip("needs REDIS_URL (CI runs with the real Redis)")
        from tests.soak.stack import private_redis

        redis_url = private_redis(os.environ["REDIS_URL"], SOAK_REDIS_DB)

    result = journey.JourneyResult()
    offline = journey.Offline()
    progress: list[float] = []
    auto_orders = 0
    journey_error = ""
    with running_stack(tmp_path / "stack", speed=SPEED, redis_url=redis_url) as run:
        try:
            with sync_api.sync_playwright() as pw:
                browser = journey.launch(pw)
                user = journey.new_page(journey.new_context(browser, run, offline), offline)
                admin = journey.new_page(journey.new_context(browser, run, offline), offline)
                try:
                    journey.user_part(user, result)
                    journey.admin_login(admin)
                    # Half an hour of recorded market first: fewer minutes give too few windows per split.
                    _wait(lambda: run.sim_elapsed_s() >= TRAIN_AFTER_SIM_S, SIM_SECONDS / SPEED * 2 + 60)
                    pressed = time.monotonic()
                    if not journey.train_now(admin, result):
                        # The stack's own first model is training: let it finish, then press again, so the
                        # admin's run goes from the web process to the ml worker as well.
                        journey.wait_training(
                            admin,
                            result,
                            pressed_at=pressed,
                            pickup_timeout=TRAIN_PICKUP_S,
                            finish_timeout=TRAIN_FINISH_S,
                        )
                        pressed = time.monotonic()
                        assert journey.train_now(admin, result), result.notes
                        result.training_picked_up_s = result.training_finished_s = None
                    progress = journey.wait_training(
                        admin,
                        result,
                        pressed_at=pressed,
                        pickup_timeout=TRAIN_PICKUP_S,
                        finish_timeout=TRAIN_FINISH_S,
                    )
                    journey.visit_every_page(user, journey.USER_PAGES)
                    journey.visit_every_page(admin, journey.ADMIN_PAGES)
                    # The person keeps the dashboard open while the simulated hour runs out; once a model is
                    # active (Train now, or the stack's own first model) they switch auto-trading on.
                    journey.open_trade(user)
                    deadline = time.monotonic() + SIM_SECONDS / SPEED * 2 + 60
                    auto_deadline = 0.0
                    while time.monotonic() < deadline:
                        state = journey.model_state(user)
                        if not result.model_states or result.model_states[-1] != state:
                            result.model_states.append(state)
                        if state == "active" and not result.auto_started:
                            result.model_active = True
                            journey.start_auto_trading(user, result)
                            auto_deadline = time.monotonic() + AUTO_ORDER_WAIT_S
                        if result.auto_started:
                            auto_orders = run.db_rows(
                                "SELECT count(*) FROM trading_order WHERE source = 'auto'"
                            )[0][0]
                        hour_done = run.sim_elapsed_s() >= SIM_SECONDS
                        if hour_done and (
                            not result.auto_started or auto_orders or time.monotonic() > auto_deadline
                        ):
                            break
                        time.sleep(2)
                except Exception as exc:  # noqa: BLE001 - one fault of several: still stop and check the rest
                    journey_error = f"the journey stopped: {type(exc).__name__}: {str(exc)[:600]}"
                    user.screenshot(path=str(artifacts_dir / f"soak-{broker}-user.png"), full_page=True)
                    admin.screenshot(path=str(artifacts_dir / f"soak-{broker}-admin.png"), full_page=True)
                finally:
                    browser.close()
            expected_vol = run.expected_vol()
            stop = run.stop()
        finally:
            shutil.copy(run.log_path, artifacts_dir / f"soak-{broker}-console.log")
            print(f"[soak {broker}] console tail:\n{run.tail(40)}")

    failures = ([journey_error] if journey_error else []) + _checks(run, result, offline, stop, expected_vol)
    if progress and any(b < a for a, b in zip(progress, progress[1:], strict=False)):
        failures.append(f"training progress went backwards: {progress}")
    if result.model_active and not auto_orders:
        failures.append(
            f"a model is active but auto-trading placed no paper order in {AUTO_ORDER_WAIT_S:.0f}s"
        )
    book, console = run.book_figures(), run.console_figures(until_wall=run.stopped_wall)
    print(
        f"[soak {broker}] speed {SPEED:g}: {book.sim_hours:.2f} sim h, "
        f"spread median {book.spread_median:.1f} "
        f"ticks (p99 {book.spread_p99:.1f}), vol {book.vol} (expected {expected_vol}), "
        f"{console.lines_per_min:.0f} lines/min, "
        f"training {result.training_state} in {result.training_finished_s}s (picked up after "
        f"{result.training_picked_up_s}s): {result.training_message[:200]!r}; model active "
        f"{result.model_active} (states {result.model_states}), auto orders {auto_orders}; "
        f"processes seen {stop.processes_seen}; "
        f"notes {result.notes}"
    )
    assert not failures, "\n".join(failures)
