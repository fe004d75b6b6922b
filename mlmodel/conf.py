"""ML settings with their defaults, overridable in Django settings; ``ML_RETRAIN_AT``, ``ML_DEVICE``,
``ML_SERVING_THREADS``, ``ML_SERVING_COMPILED`` and ``ML_TRAINING_PICKUP_TIMEOUT_S`` are also read from the
environment (``observator/settings/base.py``)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "ML_DEVICE": "auto",  # "auto" = CUDA when available
    "ML_TRAIN_DAYS": 5,
    "ML_HORIZON_S": 10.0,
    # One set of training defaults (mlmodel/config.py): train, ml_report, nightly retrain, Train now and the
    # first-model bootstrap all start from these. Window 30: at 50 the test sets of sparse data shrink.
    "ML_WINDOW": 30,
    "ML_FEATURE_LEVELS": 10,
    "ML_HIDDEN": 32,
    "ML_LAYERS": 1,
    "ML_DROPOUT": 0.0,
    "ML_EPOCHS": 40,
    "ML_PATIENCE": 6,
    "ML_BATCH_SIZE": 256,
    "ML_LR": 1e-3,
    "ML_SEED": 0,
    "ML_MAX_SAMPLES_PER_EPOCH": 200_000,
    "ML_N_SPLITS": 3,
    "ML_TRAIN_STRIDE": 1,
    "ML_EVAL_STRIDE": 1,
    "ML_SPIKE_K": 4.0,
    "ML_SPIKE_WINDOW_S": 60.0,
    "ML_SPIKE_PAD_S": 600.0,
    "ML_TRAIN_IN_SUBPROCESS": None,  # None = yes inside the ml worker (serving goes on), no elsewhere
    "ML_TRAIN_TIME_LIMIT_S": 6 * 3600,
    "ML_TRAINING_PICKUP_TIMEOUT_S": 90.0,  # a queued run no ml worker took by then is failed as undelivered
    # The automatic first model (mlmodel/bootstrap.py): on, once this much order-book data is recorded.
    "ML_BOOTSTRAP": True,
    "ML_BOOTSTRAP_MIN_MINUTES": 10.0,
    "ML_BOOTSTRAP_MARKETS": [],  # empty = every market in MARKET_CODES
    "ML_PREDICTION_KEEP_S": 3600,  # predictions older than this are pruned
    "ML_LIVE_KEEP_S": 300,  # raw book/trade history kept per market in the ML worker
    "ML_MAX_DATA_AGE_S": 15.0,  # no prediction from a snapshot older than this (None = no check: replays)
    "ML_SERVING_THREADS": 1,  # torch / BLAS threads for a serving forward pass on CPU (None/0 = leave as is)
    "ML_SERVING_COMPILED": True,  # single-layer LSTMs on CPU: compiled kernel over cached projections
    "ML_BACKTEST_THRESHOLD": 0.0005,  # the threshold the walk-forward backtest assumes (0.05 %)
    "ML_BACKTEST_ORDER_KRW": 100_000.0,
    "ML_BACKTEST_LATENCY_MS": 100,
    # The promotion gate (mlmodel/gate.py): significance level of the loss tests, the backtest round trips a
    # candidate needs over all test periods (5 days of data), and the smallest test period (samples) below
    # which a training fails instead of reporting a figure of noise.
    "ML_GATE_ALPHA": 0.05,
    "ML_GATE_MIN_ROUND_TRIPS": 20,
    "ML_MIN_TEST_SAMPLES": 200,
}


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def spread_cost_factor() -> float:
    """The share of the relative spread counted as a decision's cost, the same number auto-trading uses
    (``AUTOTRADE_SPREAD_COST_FACTOR``, validated 0..2 when the settings load; 0.5 = the half-spread), so the
    backtest that decides promotion trades by the rule the users' sessions will follow."""
    return float(getattr(settings, "AUTOTRADE_SPREAD_COST_FACTOR", 0.5))


def spike_dir() -> Path:
    """Where slices of spike/crash periods are kept (beyond the collector's local retention)."""
    default = Path(settings.MARKET_DATA_DIR).parent / (Path(settings.MARKET_DATA_DIR).name + "-ml-spikes")
    return Path(getattr(settings, "ML_SPIKE_DATA_DIR", default))


def training_cache_dir() -> Path:
    """Where archived day files (fetched back from S3 for training) are cached; never the collector's live
    directory, so its retention only ever sees what it wrote itself."""
    live = Path(settings.MARKET_DATA_DIR)
    default = live.parent / (live.name + "-training-cache")
    return Path(getattr(settings, "ML_TRAINING_CACHE_DIR", default))


@functools.cache
def code_version() -> str:
    """The git commit of the running code (or OBSERVATOR_CODE_VERSION), recorded with every model."""
    env = os.environ.get("OBSERVATOR_CODE_VERSION")
    if env:
        return env[:64]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return ""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return sha + ("-dirty" if dirty.stdout.strip() else "")
