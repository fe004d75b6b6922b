"""The admin's live training progress page in headless Chromium against the real ASGI server: it polls
progress.json every second, so epochs, losses, ETA and finally the report link appear without a reload."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from mlmodel.models import ModelVersion, TrainingRun, TrainingState
from tests.accounts.factories import PASSWORD, UserFactory

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.live]


def test_progress_page_updates_live_and_links_the_report(page, artifacts_dir):
    expect = playwright_sync.expect
    UserFactory(username="mladmin", is_staff=True, is_superuser=True)
    run = TrainingRun.objects.create(
        market="KRW-BTC",
        state=TrainingState.RUNNING,
        stage="split 1/2: training lstm",
        epoch=1,
        total_epochs=10,
        split=1,
        total_splits=2,
        train_loss=0.9,
        val_loss=1.1,
        eta_seconds=95,
    )
    page.goto("/admin/login/?next=/admin/mlmodel/trainingrun/")
    page.fill("#id_username", "mladmin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.get_by_test_id("train-now")).to_be_visible()
    page.goto(f"/admin/mlmodel/trainingrun/{run.pk}/progress/")
    expect(page.locator("#tp-epoch")).to_have_text("1 / 10")
    expect(page.locator("#tp-eta")).to_have_text("1 min 35 s")
    expect(page.get_by_test_id("training-undelivered")).to_be_hidden()
    TrainingRun.objects.filter(pk=run.pk).update(
        epoch=7, val_loss=0.5, train_loss=0.4, eta_seconds=12, progress=35.0
    )
    expect(page.locator("#tp-epoch")).to_have_text("7 / 10")  # no reload: the page polls
    expect(page.locator("#tp-bar")).to_have_attribute("value", "35")  # the service's monotonic progress
    expect(page.locator("#tp-val")).to_have_text("0.5000")
    expect(page.locator("#tp-eta")).to_have_text("12 s")
    version = ModelVersion(
        market="KRW-BTC",
        version=1,
        name="lstm-KRW-BTC",
        horizon_s=10.0,
        feature_version="ob-features-1",
        feature_names=["x"],
        hyperparameters={},
    )
    version.artifact.save("m.pt", ContentFile(b"x"), save=False)
    version.save()
    TrainingRun.objects.filter(pk=run.pk).update(
        state=TrainingState.SUCCEEDED,
        result_version=version,
        message="lstm: ... Beats persistence on validation",
    )
    expect(page.locator("#tp-state")).to_have_text("succeeded")
    expect(page.locator("#tp-report")).to_be_visible()
    assert page.locator("#tp-report").get_attribute("href") == f"/model/versions/{version.pk}/"
    expect(page.locator("#tp-message")).to_contain_text("Beats persistence")
    expect(page.locator("#tp-bar")).to_have_attribute("value", "100")
    page.screenshot(path=str(artifacts_dir / "admin-training-progress.png"), full_page=True)


def test_progress_page_says_when_no_ml_worker_picked_the_run_up(page, settings):
    import datetime as dt

    from django.utils import timezone

    expect = playwright_sync.expect
    UserFactory(username="mladmin", is_staff=True, is_superuser=True)
    run = TrainingRun.objects.create(market="KRW-BTC", total_epochs=10, total_splits=2, stage="queued")
    page.goto("/admin/login/?next=/admin/mlmodel/trainingrun/")
    page.fill("#id_username", "mladmin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto(f"/admin/mlmodel/trainingrun/{run.pk}/progress/")
    expect(page.locator("#tp-state")).to_have_text("queued")
    # The server's pickup timeout (90 s by default) passes without a worker: the next poll says so.
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    expect(page.locator("#tp-state")).to_have_text("failed")
    expect(page.get_by_test_id("training-undelivered")).to_be_visible()
    expect(page.locator("#tp-message")).to_contain_text("is the ml worker running?")
