"""The stack as launched (``python3 dev.py run --demo``) used by a person for an hour (or ``--duration``):
restarts, the simulated book's spread and volatility, console lines per minute, memory growth per process,
orders placed, task latencies, and whether Ctrl-C stops everything. The same harness as tests/soak.

    python bench/bench_stack_hour.py                        # one real hour, embedded defaults
    python bench/bench_stack_hour.py --duration 600         # ten minutes
    python bench/bench_stack_hour.py --duration 300 --speed 12 --redis   # an hour of market on Redis

Baseline in the same run: the first sixth of the run against the last (spread, memory), so drift and leaks
show as a ratio; the book's volatility against the simulator's target.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.soak import journey  # noqa: E402
from tests.soak.stack import StackRun, private_redis, running_stack  # noqa: E402


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {ordered[-1]:.0f} ms (n={len(ordered)})"


def _latencies(run: StackRun, sql: str) -> list[float]:
    return [float(r[0]) * 86_400_000 for r in run.db_rows(sql) if r[0] is not None]


def report(
    run: StackRun,
    result: journey.JourneyResult,
    stop: object,
    offline: journey.Offline,
    expected_vol: float | None,
) -> None:
    console = run.console_figures(until_wall=run.stopped_wall)
    book = run.book_figures()
    wall_h = ((run.stopped_wall or time.monotonic()) - run.ready_wall) / 3600
    print(f"\n== stack hour: {wall_h * 60:.1f} min wall at speed {run.speed:g} ({book.sim_hours:.2f} sim h)")
    print(f"restarts: {len(console.restarts)}  {console.restarts[:3]}")
    print(f"ERROR/CRITICAL/Traceback lines: {len(console.errors)}  {console.errors[:3]}")
    print(
        f"console: {console.lines_per_min:.1f} lines/min after start-up ({console.startup_lines} before, "
        f"{console.lines_total} in all, {console.bytes_total / 1e6:.2f} MB)"
    )
    drift = book.spread_last_sixth / book.spread_first_sixth if book.spread_first_sixth else float("nan")
    print(
        f"spread (ticks, {book.samples} samples): p50 {book.spread_median:.2f}, p99 {book.spread_p99:.2f}, "
        f"max {book.spread_max:.0f}; first sixth {book.spread_first_sixth:.2f} -> last sixth "
        f"{book.spread_last_sixth:.2f} (x{drift:.2f})"
    )
    vol = (
        f"{book.vol * 100:.4f} % (x{book.vol / expected_vol:.2f} the calibrated {expected_vol * 100:.3f} % "
        "for the simulator's signal strength)"
        if book.vol and expected_vol
        else "-"
    )
    print(f"one-minute volatility of the mid: {vol}")
    print("RSS per role (MiB, after the first sixth -> at the end, growth per wall hour over the rest):")
    for name, (first, last) in sorted(run.rss_figures().items()):
        per_h = (last - first) / 1024 / (wall_h * 5 / 6) if wall_h > 0 else float("nan")
        print(
            f"  {name:>10}: {first / 1024:7.1f} -> {last / 1024:7.1f}  ({per_h:+.1f} MiB/h, x{last / first:.2f})"  # noqa: E501
        )
    orders = run.db_rows("SELECT source, state, count(*) FROM trading_order GROUP BY source, state")
    print(f"orders (source, state, count): {orders}")
    print(f"auto-trading decisions: {run.db_rows('SELECT count(*) FROM trading_autotradedecision')}")
    print(
        "order -> exchange ack: "
        + _ms(_latencies(run, "SELECT julianday(submitted_at) - julianday(created_at) FROM trading_order"))
    )
    print(
        "scheduled order due -> fired: "
        + _ms(
            _latencies(run, "SELECT julianday(fired_at) - julianday(trigger_at) FROM trading_scheduledorder")
        )
    )
    print(
        "training queued -> picked up: "
        + _ms(
            _latencies(run, "SELECT julianday(picked_up_at) - julianday(created_at) FROM mlmodel_trainingrun")
        )
    )
    runs = run.db_rows(
        "SELECT id, trigger, state, (julianday(finished_at) - julianday(started_at)) * 86400, "
        "substr(message, 1, 160) FROM mlmodel_trainingrun ORDER BY id"
    )
    print(f"training runs (id, trigger, state, seconds, message): {runs}")
    active = run.db_rows("SELECT market, version FROM mlmodel_modelversion WHERE status = 'active'")
    print(f"active models: {active}")
    print(f"journey: {result}")
    print(f"offline: outside requests {sorted(set(offline.outside))[:5]}, failed assets {offline.failed[:5]}")
    print(
        f"Ctrl-C: launcher rc {stop.returncode} after {stop.launcher_s:.1f} s; {stop.processes_seen} seen; "  # type: ignore[attr-defined]
        f"alive at launcher exit {stop.alive_at_launcher_exit}; left after {stop.survivors}"  # type: ignore[attr-defined]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="wall seconds after start-up")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--redis", action="store_true", help="run on REDIS_URL (its database 11, emptied)")
    parser.add_argument("--action-every", type=float, default=60.0, help="a paper order this often (s)")
    parser.add_argument("--epochs", type=int, default=5, help="Train now: max. epochs")
    parser.add_argument("--workdir", default=None, help="keep the stack's var/ and console here")
    args = parser.parse_args()
    redis_url = None
    if args.redis:
        if not os.environ.get("REDIS_URL"):
            parser.error("--redis needs REDIS_URL")
        redis_url = private_redis(os.environ["REDIS_URL"], 11)
    from playwright.sync_api import sync_playwright

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stack-hour-"))
    print(f"stack in {workdir} (console: {workdir / 'stack' / 'console.log'})", flush=True)
    result, offline = journey.JourneyResult(), journey.Offline()
    with running_stack(workdir / "stack", speed=args.speed, redis_url=redis_url) as run:
        print(f"up after {run.ready_wall - run.started_wall:.0f} s on {run.base_url}", flush=True)
        end = run.ready_wall + args.duration
        with sync_playwright() as pw:
            browser = journey.launch(pw)
            user = journey.new_page(journey.new_context(browser, run, offline), offline)
            admin = journey.new_page(journey.new_context(browser, run, offline), offline)
            try:
                journey.user_part(user, result)
                journey.admin_login(admin)
                # Train now after half an hour of recorded market (or half the run, when shorter); the stack
                # may have trained its first model by itself before.
                train_after_sim_s = min(1800.0, args.duration * args.speed / 2)
                next_action = time.monotonic() + args.action_every
                trained = False
                while time.monotonic() < end:
                    now = time.monotonic()
                    if not trained and run.sim_elapsed_s() >= train_after_sim_s:
                        trained = True
                        journey.train_now(admin, result, epochs=args.epochs)
                        journey.wait_training(
                            admin, result, pressed_at=now, pickup_timeout=180, finish_timeout=end - now
                        )
                        print(
                            f"training: {result.training_state} {result.training_message[:200]!r}", flush=True
                        )
                    state = journey.model_state(user)
                    if not result.model_states or result.model_states[-1] != state:
                        result.model_states.append(state)
                        print(f"model state: {state}", flush=True)
                    if state == "active" and not result.auto_started:
                        result.model_active = True
                        journey.start_auto_trading(user, result)
                    if now >= next_action:
                        next_action = now + args.action_every
                        journey.open_trade(user)
                        journey.paper_buy(user, krw=10_000)
                        result.manual_orders_done += 1
                        if result.manual_orders_done % 5 == 0:
                            journey.schedule_buy(user, krw=10_000)
                        if result.manual_orders_done % 10 == 0:
                            journey.visit_every_page(user, journey.USER_PAGES)
                            journey.visit_every_page(admin, journey.ADMIN_PAGES)
                            journey.open_trade(user)
                        book = run.book_figures()
                        print(
                            f"{(now - run.ready_wall) / 60:5.1f} min: {book.sim_hours:.2f} sim h, spread "
                            f"p50 {book.spread_median:.1f} ticks, "
                            f"{run.console_figures().lines_per_min:.0f} lines/min, "
                            f"{result.manual_orders_done} manual orders",
                            flush=True,
                        )
                    time.sleep(2.0)
            finally:
                browser.close()
        expected_vol = run.expected_vol()
        stop = run.stop()
    report(run, result, stop, offline, expected_vol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
