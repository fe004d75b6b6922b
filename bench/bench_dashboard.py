"""Dashboard rendering in headless Chromium against the real stack (simulator -> collector -> web -> browser).

Measures, for the /trade page:
  * time to first live order-book paint after navigation start (the book drawn from the WebSocket snapshot
    or first update), median of ``--loads`` page loads;
  * frames per second the page sustains while the order book updates 10 times a second (the web process's
    per-browser throttle set to 100 ms, so the real feed delivers at most 10 updates/s), counted with
    requestAnimationFrame over ``--seconds``, plus the JavaScript time spent painting the book per update
    and the number of long frames (> 50 ms);
each for three variants of the same page in the same run, interleaved:
  * full     -- ladder + depth chart (what users get);
  * ladder   -- the ladder without the depth chart (baseline 1);
  * none     -- the book is not painted at all (baseline 2: the cost of everything else on the page).
Prints medians and ratios vs the baselines.
Usage: ``python bench/bench_dashboard.py [--loads 5] [--seconds 5]``.
Needs /usr/bin/chromium and Playwright for Python.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CHROMIUM = "/usr/bin/chromium"
VARIANTS = ("full", "ladder", "none")
USER, PASSWORD = "benchuser", "Bench-passw0rd!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2.0)
            return
        time.sleep(0.2)
    raise TimeoutError(url)


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


@contextlib.contextmanager
def stack(tmp: Path) -> Iterator[str]:
    """Simulator, web (uvicorn) and collector on free ports with a private SQLite database."""
    sim_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "observator.settings.local",
        "OBSERVATOR_VAR_DIR": str(tmp / "var"),
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "UPBIT_REST_URL": f"http://127.0.0.1:{sim_port}",
        "UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1",
        "MARKET_SIMULATED": "true",
        "MARKET_CODES": "KRW-BTC",
        "MARKET_DATA_DIR": str(tmp / "data"),
        "MARKET_PREDICTION_FEED": "false",
        "MARKET_WS_THROTTLE_MS": "100",  # at most 10 order-book updates a second per browser
        "REALTIME_RELAY_URL": f"http://127.0.0.1:{web_port}/internal/realtime/",
        "BITFLYER_API_URL": "http://127.0.0.1:9",
        "BINANCE_API_URL": "http://127.0.0.1:9",
        "OKX_API_URL": "http://127.0.0.1:9",
        "FX_SOURCE_URL": "http://127.0.0.1:9",
        "FEEDS_HTTP_TIMEOUT": "0.5",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    code = (
        "from accounts.models import User; "
        f"User.objects.create_user(username={USER!r}, password={PASSWORD!r}, email='bench@example.com')"
    )
    subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)
    logs = tmp / "logs"
    logs.mkdir()
    with contextlib.ExitStack() as es:
        es.enter_context(
            process(
                [
                    PY,
                    "manage.py",
                    "upbit_sim",
                    "--port",
                    str(sim_port),
                    "--source",
                    "synthetic",
                    "--markets",
                    "KRW-BTC",
                    "--seed",
                    "3",
                ],
                {**env, "OBSERVATOR_ROLE": "sim"},
                logs / "sim.log",
            )
        )
        wait_http(f"http://127.0.0.1:{sim_port}/v1/market/all")
        es.enter_context(
            process(
                [
                    PY,
                    "-m",
                    "uvicorn",
                    "observator.asgi:application",
                    "--port",
                    str(web_port),
                    "--ws",
                    "websockets",
                    "--lifespan",
                    "off",
                    "--log-level",
                    "warning",
                ],
                {**env, "OBSERVATOR_ROLE": "web"},
                logs / "web.log",
            )
        )
        wait_http(f"http://127.0.0.1:{web_port}/healthz")
        es.enter_context(
            process(
                [PY, "manage.py", "collect", "--markets", "KRW-BTC", "--no-predictions"],
                {**env, "OBSERVATOR_ROLE": "collector"},
                logs / "collector.log",
            )
        )
        time.sleep(3)  # the collector's first snapshots reach the web process
        yield f"http://127.0.0.1:{web_port}"


FPS_JS = """async (seconds) => {
  const s = window.__trade.stats;
  const u0 = s.bookUpdates, p0 = s.bookPaints, ms0 = s.paintMs || 0;
  const intervals = [];
  let frames = 0, last = performance.now();
  const t0 = last;
  await new Promise((resolve) => {
    const step = (now) => {
      frames += 1; intervals.push(now - last); last = now;
      if (now - t0 < seconds * 1000) requestAnimationFrame(step); else resolve();
    };
    requestAnimationFrame(step);
  });
  const dt = (performance.now() - t0) / 1000;
  const updates = s.bookUpdates - u0, paints = s.bookPaints - p0;
  return { fps: frames / dt, updates_per_s: updates / dt, paints_per_s: paints / dt,
           paint_ms_per_update: updates ? ((s.paintMs || 0) - ms0) / updates : 0,
           long_frames: intervals.filter((x) => x > 50).length };
}"""


def measure(base: str, loads: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}

    def add(variant: str, key: str, value: float) -> None:
        results[variant].setdefault(key, []).append(value)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=base)
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url("**/home")
        for _ in range(loads):
            for variant in VARIANTS:
                page.goto(f"/trade?bench_render={variant}")
                page.wait_for_function(
                    "window.__trade && (window.__trade.stats.firstBookPaint"
                    " || window.__trade.stats.firstBookData)",
                    timeout=30000,
                )
                stats = page.evaluate("window.__trade.stats")
                first = stats["firstBookPaint"] or stats["firstBookData"]
                add(variant, "first_book_ms", float(first))
        for _ in range(max(1, loads // 2)):
            for variant in VARIANTS:
                page.goto(f"/trade?bench_render={variant}")
                page.wait_for_function(
                    "window.__trade && window.__trade.stats.bookUpdates > 3", timeout=30000
                )
                r = page.evaluate(FPS_JS, seconds)
                for key, value in r.items():
                    add(variant, key, float(value))
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=5, help="page loads per variant (first paint)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each frame-rate window")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found")
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as d, stack(Path(d)) as base:
        res = measure(base, args.loads, args.seconds)

    med: dict[str, dict[str, float]] = {
        v: {k: statistics.median(xs) for k, xs in res[v].items()} for v in VARIANTS
    }
    print(
        f"\n/trade in headless Chromium, real stack; {args.loads} loads per variant, "
        f"{args.seconds:.0f} s frame windows, book throttled to <= 10 updates/s per browser"
    )
    cols = ["first_book_ms", "updates_per_s", "fps", "paint_ms_per_update", "long_frames"]
    print(f"{'variant':<8} " + " ".join(f"{c:>20}" for c in cols))
    for v in VARIANTS:
        print(f"{v:<8} " + " ".join(f"{med[v].get(c, float('nan')):>20.2f}" for c in cols))
    full, ladder, none = med["full"], med["ladder"], med["none"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    print("\nratios (median):")
    print(
        f"  first paint   full / none (render off)  = {ratio(full['first_book_ms'], none['first_book_ms'])}"
        f"   full / ladder = {ratio(full['first_book_ms'], ladder['first_book_ms'])}"
    )
    print(
        f"  fps           full / none               = {ratio(full['fps'], none['fps'])}"
        f"   full / ladder = {ratio(full['fps'], ladder['fps'])}"
    )
    print(
        "  paint ms/upd  full / ladder             = "
        f"{ratio(full['paint_ms_per_update'], ladder['paint_ms_per_update'])}"
        f"   (budget per frame at 60 fps: 16.7 ms)"
    )


if __name__ == "__main__":
    main()
