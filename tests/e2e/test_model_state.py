"""The stack on a fresh install, with no model: the dashboard says it is collecting data, beat sees enough
recorded data and queues the first model's training run, the ml worker trains it in its own process, and the
dashboard follows (training with progress, then model vN active or why no model passed) - without a single
failing request or console error in the browser."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from mlmodel.models import ModelBootstrap, TrainingRun, TrainingTrigger
from tests import live
from tests.e2e.conftest import Stack
from tests.e2e.test_dashboard import PASSWORD, _log_in

pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(720)]

FINAL = ("active", "not_promoted")


@pytest.fixture
def stack_env() -> dict[str, str]:
    # 1.5 minutes of data instead of ten, checked every 2 s; one market trains (two would share 2 cores).
    return {"ML_BOOTSTRAP_MIN_MINUTES": "1.5", "ML_BOOTSTRAP_CHECK_S": "2", "ML_BOOTSTRAP_MARKETS": "KRW-BTC"}


def _snap(page: Any, path: Path, **kw: Any) -> None:  # noqa: ANN401
    """A screenshot for the artifacts; never the reason a test fails (a loaded box can take long to paint)."""
    with contextlib.suppress(Exception):
        page.screenshot(path=str(path), timeout=30_000, **kw)


def _state(page: Any) -> str:  # noqa: ANN401
    return page.locator("#model-version").get_attribute("data-model-state") or ""


def test_dashboard_follows_the_first_model_without_a_failing_request(
    page: Any,  # noqa: ANN401
    e2e_stack: Stack,
    artifacts_dir: Path,
    django_user_model: Any,  # noqa: ANN401
) -> None:
    django_user_model.objects.create_user(username="firstmodel", password=PASSWORD, email="f@example.com")
    seen: list[str] = []
    try:
        _log_in(page, "firstmodel")
        page.goto("/trade?market=KRW-BTC")
        page.wait_for_selector("#model-version[data-model-state]")
        seen.append(_state(page))
        assert seen[0] in ("collecting", "training", *FINAL), seen  # a slow start may miss the early ones
        if seen[0] == "collecting":
            assert re.fullmatch(
                r"Collecting market data: \d+ of 2 minutes", page.locator("#model-version").inner_text()
            )
            page.wait_for_function(
                "document.querySelector('#model-version').dataset.modelState !== 'collecting'",
                timeout=240_000,
            )
            seen.append(_state(page))
        _snap(page, artifacts_dir / "first-model-training.png")
        # The first run ends (training shares the box with the whole stack and other test runs: minutes).
        live.wait_until(
            lambda: TrainingRun.objects.filter(market="KRW-BTC", state__in=["succeeded", "failed"]).exists(),
            timeout=420,
            interval=1.0,
            message="the first model's training run finished",
        )
        first = TrainingRun.objects.filter(market="KRW-BTC").order_by("id").first()
        assert first.trigger == TrainingTrigger.BOOTSTRAP, first.trigger
        assert (
            first.process_id and first.process_id != os.getpid()
        )  # trained by the ml worker's child process
        print(f"[e2e] first model: states {seen}; run {first.pk} {first.state}: {first.message[:300]}")
        if (first.decision or {}).get("promote"):
            page.wait_for_function(
                "document.querySelector('#model-version').dataset.modelState === 'active'", timeout=30_000
            )
            assert re.fullmatch(r"lstm-KRW-BTC v\d+", page.locator("#model-version").inner_text())
            assert TrainingRun.objects.filter(market="KRW-BTC").count() == 1  # never trained again
        else:
            # Refused by the promotion rule (not loosened): the dashboard says why, and the next attempt
            # waits for twice the data it had (half a minute of data more comes in half a minute here, so
            # the page may already show that second attempt training).
            row = ModelBootstrap.objects.get(market="KRW-BTC")
            assert row.next_at_s >= 2 * 90 and row.attempts >= 1
            page.wait_for_function(
                "['not_promoted', 'training', 'active']"
                ".includes(document.querySelector('#model-version').dataset.modelState)",
                timeout=30_000,
            )
            text = page.locator("#model-version").inner_text()
            if _state(page) == "not_promoted":
                assert text.startswith("No model passed: ") and "Next try at" in text, text
            assert TrainingRun.objects.filter(market="KRW-BTC").count() <= 2
        page.locator("#model-version").scroll_into_view_if_needed()
        _snap(page, artifacts_dir / "first-model-done.png")
        # The other market is recorded but has no automatic first model here: it says so, with no 404.
        page.select_option("#market-select", "KRW-ETH")
        page.wait_for_function("document.querySelector('#model-version').dataset.modelState === 'none'")
        page.goto("/model?market=KRW-BTC")
        assert not page.failed_requests, page.failed_requests
        assert not page.errors, page.errors
    except Exception:
        print(e2e_stack.all_logs())
        for r in TrainingRun.objects.all():
            print(f"[e2e] run {r.pk}: {r.state} {r.stage!r} {r.progress}% {r.message[:400]!r}")
        _snap(page, artifacts_dir / "failure-first-model.png", full_page=True)
        raise
    finally:  # never leave a detached training process behind (a later attempt may start meanwhile)

        def stopped() -> bool:
            left = TrainingRun.objects.filter(state__in=["queued", "running"], process_id__isnull=False)
            for r in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(r.process_id, signal.SIGTERM)
            return not left.exists()

        live.wait_until(stopped, timeout=60, interval=1.0, message="the training processes stopped")
