"""manage.py train (progress bar, promote-if-better) and manage.py ml_report on recorded day files."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from mlmodel import gate
from mlmodel.models import ModelStatus, ModelVersion, TrainingRun, TrainingState
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = pytest.mark.django_db
SMALL = [
    "--epochs",
    "3",
    "--window",
    "16",
    "--hidden",
    "8",
    "--horizon",
    "10",
    "--splits",
    "2",
    "--no-gbt",
    "--device",
    "cpu",
]


def test_train_command_stores_and_promotes_a_better_model(
    _ml_env: dict[str, Path], settings: Any, monkeypatch: pytest.MonkeyPatch
):
    synthetic_days(_ml_env["data"], signal_strength=6.0)  # clear of the costs with the horizon exit
    # The small market's signal is linear in the OFI (ridge-OFI finds it as well as the LSTM: the gate would
    # refuse) and 3 epochs trade little; here the command's promotion path is under test, with the rest of
    # the real gate (significance against persistence, net P&L > 0).
    monkeypatch.setattr(gate, "CHEAP_BASELINES", ())
    settings.ML_GATE_MIN_ROUND_TRIPS = 1
    out, err = StringIO(), StringIO()
    call_command(
        "train",
        "--market",
        "KRW-BTC",
        "--days",
        "5",
        "--data-dir",
        str(_ml_env["data"]),
        *SMALL,
        "--promote-if-better",
        stdout=out,
        stderr=err,
    )
    v = ModelVersion.objects.get()
    assert v.status == ModelStatus.ACTIVE and v.hyperparameters["epochs"] == 3, (
        TrainingRun.objects.get().message
    )
    run = TrainingRun.objects.get()
    assert run.state == TrainingState.SUCCEEDED and run.trigger == "command"
    assert run.decision["promote"] is True
    assert "stored KRW-BTC v1" in out.getvalue() and "Promotion: yes" in out.getvalue()
    assert "epoch" in err.getvalue()  # the tqdm progress bar


def test_train_command_reports_bad_input_and_missing_data(_ml_env: dict[str, Path]):
    with pytest.raises(CommandError, match="Invalid training parameters"):
        call_command("train", "--epochs", "0", "--no-progress")
    with pytest.raises(CommandError, match="No order-book day files"):
        call_command("train", "--market", "KRW-XRP", "--no-progress", *SMALL)
    assert TrainingRun.objects.get().state == TrainingState.FAILED


def test_ml_report_writes_an_honest_markdown_report(_ml_env: dict[str, Path], tmp_path: Path):
    synthetic_days(_ml_env["data"])
    out = tmp_path / "docs" / "report.md"
    call_command(
        "ml_report",
        "--no-sensitivity",
        "--market",
        "KRW-BTC",
        "--data-dir",
        str(_ml_env["data"]),
        "--epochs",
        "2",
        "--window",
        "16",
        "--horizon",
        "10",
        "--splits",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        stdout=StringIO(),
    )
    text = out.read_text()
    for needle in (
        "## Verdict",
        "| persistence |",
        "| lstm |",
        "| linear_ofi |",
        "| gbt |",
        "### Per split",
        "Calibration",
        "net P&L",
        "round trip costs",
        "## Promotion gate",
        "p vs persistence",
    ):
        assert needle in text
    assert (tmp_path / "docs" / "report-plots" / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert ModelVersion.objects.count() == 0  # a report stores no model


def test_ml_bootstrap_trains_on_the_simulators_synthetic_market(
    _ml_env: dict[str, Path], tmp_path: Path, settings: Any
):
    from market import dayfiles

    settings.ML_MIN_TEST_SAMPLES = 50  # 6 minutes of snapshots

    out = StringIO()
    root = tmp_path / "boot"
    call_command(
        "ml_bootstrap",
        "--markets",
        "KRW-ETH",
        "--minutes",
        "6",
        "--epochs",
        "2",
        "--data-dir",
        str(root),
        stdout=out,
    )
    assert dayfiles.list_days(root, "orderbook", "KRW-ETH") and dayfiles.list_days(root, "trade", "KRW-ETH")
    run = TrainingRun.objects.get()
    assert run.state == TrainingState.SUCCEEDED and run.params["data_dir"] == str(root)
    v = run.result_version
    # Promoted exactly when the promotion gate says so (no model was active), and the reason is kept.
    assert (v.status == ModelStatus.ACTIVE) == run.decision["promote"] == run.decision["gate"]["passed"]
    assert run.decision["reason"] and run.decision["reason"] in run.message
    assert "synthetic snapshots" in out.getvalue()
    if v.status == ModelStatus.ACTIVE:
        again = StringIO()
        call_command("ml_bootstrap", "--markets", "KRW-ETH", "--data-dir", str(root), stdout=again)
        assert "a model is active already" in again.getvalue() and TrainingRun.objects.count() == 1


def test_ml_bootstrap_and_train_leave_a_market_with_a_run_in_progress_alone(
    _ml_env: dict[str, Path], tmp_path: Path
):
    """The commands create their run through the one queueing service: a market whose run is queued or
    running (the admin's "Train now", the nightly beat) gets no second one."""
    busy = TrainingRun.objects.create(market="KRW-ETH", state=TrainingState.RUNNING)
    err = StringIO()
    call_command(
        "ml_bootstrap", "--markets", "KRW-ETH", "--minutes", "1", "--data-dir", str(tmp_path), stderr=err
    )
    assert "KRW-ETH: A training run for KRW-ETH is already queued or running. Skipped." in err.getvalue()
    with pytest.raises(CommandError, match="already queued or running"):
        call_command("train", "--market", "KRW-ETH", "--data-dir", str(tmp_path), *SMALL)
    assert list(TrainingRun.objects.values_list("pk", flat=True)) == [busy.pk]


def test_a_command_run_counts_as_picked_up_and_is_never_failed_as_undelivered(
    _ml_env: dict[str, Path], settings: Any
):
    from mlmodel.services.runs import training_runs_fail_undelivered

    settings.ML_TRAINING_PICKUP_TIMEOUT_S = 0  # any queued run nobody took is failed at once
    with pytest.raises(CommandError, match="No order-book day files"):
        call_command("train", "--market", "KRW-ETH", "--days", "1", *SMALL)
    run = TrainingRun.objects.get()
    assert run.trigger == "command" and run.picked_up_at is not None and run.celery_task_id == ""
    assert training_runs_fail_undelivered() == 0
