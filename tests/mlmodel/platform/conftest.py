"""Fixtures for the ML platform tests: isolated data/media dirs, small fast training parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mlmodel import serving

MARKET = "KRW-BTC"


@pytest.fixture(autouse=True)
def _ml_env(settings, tmp_path: Path) -> dict[str, Path]:  # noqa: ANN001
    torch.set_num_threads(1)
    paths = {"data": tmp_path / "data", "spikes": tmp_path / "spikes", "media": tmp_path / "media"}
    for p in paths.values():
        p.mkdir()
    settings.MARKET_DATA_DIR = paths["data"]
    settings.ML_SPIKE_DATA_DIR = paths["spikes"]
    settings.MEDIA_ROOT = paths["media"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(paths["media"])},
        },
    }
    settings.ML_MAX_DATA_AGE_S = None  # the synthetic days are in the past; test_serving checks the guard
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    serving.reset_server()
    yield paths
    serving.reset_server()


def small_params(**overrides: Any) -> dict[str, Any]:
    """Tiny model, few epochs: a run takes about a second on one CPU thread."""
    params = {
        "market": MARKET,
        "days": 5,
        "window": 16,
        "hidden": 8,
        "epochs": 4,
        "patience": 3,
        "batch_size": 128,
        "n_splits": 2,
        "horizon_s": 10.0,
        "baselines": ["linear_ofi"],
        "device": "cpu",
        "feature_levels": 5,
        "max_samples_per_epoch": 4000,
        "lr": 1e-3,
        "seed": 0,
        "backtest_threshold": 0.0,
    }
    params.update(overrides)
    return params
