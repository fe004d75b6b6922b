"""The one training configuration: every default a training uses (window, horizon, epochs, levels, batch,
learning rate, fees, threshold, the gate's round trips and alpha, the smallest test period), read from
settings in one place, so ``train``, ``ml_report``, nightly retrain, Train now and the first-model bootstrap
start from the same numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from mlmodel import conf


@dataclass(frozen=True)
class TrainingConfig:
    window: int
    horizon_s: float
    epochs: int
    patience: int
    feature_levels: int
    batch_size: int
    lr: float
    n_splits: int
    fee_rate: float
    backtest_threshold: float
    backtest_order_krw: float
    backtest_latency_ms: int
    gate_min_round_trips: int
    gate_alpha: float
    min_test_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_config() -> TrainingConfig:
    """The configuration from the current settings (``ML_*`` in Django settings, else mlmodel/conf.py)."""
    cfg = TrainingConfig(
        window=int(conf.get("ML_WINDOW")),
        horizon_s=float(conf.get("ML_HORIZON_S")),
        epochs=int(conf.get("ML_EPOCHS")),
        patience=int(conf.get("ML_PATIENCE")),
        feature_levels=int(conf.get("ML_FEATURE_LEVELS")),
        batch_size=int(conf.get("ML_BATCH_SIZE")),
        lr=float(conf.get("ML_LR")),
        n_splits=int(conf.get("ML_N_SPLITS")),
        fee_rate=float(settings.UPBIT_FEE_RATE),
        backtest_threshold=float(conf.get("ML_BACKTEST_THRESHOLD")),
        backtest_order_krw=float(conf.get("ML_BACKTEST_ORDER_KRW")),
        backtest_latency_ms=int(conf.get("ML_BACKTEST_LATENCY_MS")),
        gate_min_round_trips=int(conf.get("ML_GATE_MIN_ROUND_TRIPS")),
        gate_alpha=float(conf.get("ML_GATE_ALPHA")),
        min_test_samples=int(conf.get("ML_MIN_TEST_SAMPLES")),
    )
    errors = [
        name
        for name, ok in (
            ("ML_GATE_ALPHA", 0 < cfg.gate_alpha < 1),
            ("ML_GATE_MIN_ROUND_TRIPS", cfg.gate_min_round_trips >= 1),
            ("ML_MIN_TEST_SAMPLES", cfg.min_test_samples >= 1),
            ("ML_WINDOW", cfg.window >= 1),
            ("ML_EPOCHS", cfg.epochs >= 1),
        )
        if not ok
    ]
    if errors:
        raise ValueError(f"invalid ML settings: {', '.join(errors)}")
    return cfg
