"""One training config (mlmodel/config.py): train, ml_report, retraining and the bootstrap start from the same
defaults, settings change them in one place, and a too-small test period is an error with the numbers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core.errors import ValidationFailed
from mlmodel.bootstrap import Recorded, model_bootstrap_params
from mlmodel.config import TrainingConfig, training_config
from mlmodel.management.commands import ml_report, train
from mlmodel.services.params import TrainingFailed, TrainParams
from mlmodel.services.train import _test_sizes_check

SHARED = ("window", "horizon_s", "epochs", "patience", "feature_levels", "batch_size", "lr", "n_splits")


def _defaults(command: Any, name: str) -> dict[str, Any]:
    parser = command.Command().create_parser("manage.py", name)
    return vars(parser.parse_args([]))


def test_train_params_start_from_the_one_config() -> None:
    cfg = training_config()
    p = TrainParams()
    for name in (*SHARED, "backtest_threshold", "backtest_order_krw", "backtest_latency_ms"):
        assert getattr(p, name) == getattr(cfg, name), name
    assert (p.gate_alpha, p.gate_min_round_trips, p.min_test_samples) == (
        cfg.gate_alpha,
        cfg.gate_min_round_trips,
        cfg.min_test_samples,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.window = 1  # type: ignore[misc]
    assert isinstance(cfg, TrainingConfig) and cfg.to_dict()["gate_alpha"] == 0.05


def test_settings_change_every_entry_point_at_once(settings: Any) -> None:
    settings.ML_WINDOW, settings.ML_EPOCHS, settings.ML_GATE_ALPHA = 24, 7, 0.01
    settings.ML_GATE_MIN_ROUND_TRIPS, settings.ML_MIN_TEST_SAMPLES = 12, 300
    p = TrainParams()
    assert (p.window, p.epochs, p.gate_alpha, p.gate_min_round_trips, p.min_test_samples) == (
        24,
        7,
        0.01,
        12,
        300,
    )
    # The first-model bootstrap caps the window by the data it has, never above the config's.
    boot = model_bootstrap_params(recorded=Recorded(3600.0, 100_000, (), 15))
    assert boot["window"] == 24
    settings.ML_GATE_ALPHA = 1.5
    with pytest.raises(ValueError, match="ML_GATE_ALPHA"):
        training_config()


def test_train_and_ml_report_have_the_same_defaults() -> None:
    """Neither command sets a default of its own (train used window 50 / epochs 30, ml_report 30 / 40)."""
    t, r = _defaults(train, "train"), _defaults(ml_report, "ml_report")
    for opt in ("days", "epochs", "horizon", "window", "splits", "device", "seed"):
        assert t[opt] is None and r[opt] is None, opt
    assert r["threshold_pct"] is None
    help_text = ml_report.Command().create_parser("manage.py", "ml_report").format_help()  # no % crash
    assert "threshold" in help_text and "%" in help_text


def test_a_too_small_test_period_is_an_error_with_the_numbers() -> None:
    report = {"splits": [{"samples": {"test": 1117}}, {"samples": {"test": 129}}, {"samples": {"test": 44}}]}
    with pytest.raises(TrainingFailed) as err:
        _test_sizes_check(report, minimum=200)
    text = str(err.value.message)
    assert "1117, 129, 44" in text and "200" in text and "ML_MIN_TEST_SAMPLES" in text
    _test_sizes_check(report, minimum=44)  # large enough: no error
    assert isinstance(err.value, ValidationFailed)  # the run fails with this message; train: CommandError
