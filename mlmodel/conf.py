"""The ML settings, read from Django settings: every ``ML_*`` knob and its default is defined once, in
``observator/settings/ml.py``; this module only reads them."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings


def get(name: str) -> Any:
    return getattr(settings, name)


def spread_cost_factor() -> float:
    """The share of the relative spread counted as a decision's cost, the same number auto-trading uses
    (``AUTOTRADE_SPREAD_COST_FACTOR``, validated 0..2 when the settings load; 0.5 = the half-spread), so the
    backtest that decides promotion trades by the rule the users' sessions will follow."""
    return float(settings.AUTOTRADE_SPREAD_COST_FACTOR)


def spike_dir() -> Path:
    """Where slices of spike/crash periods are kept (beyond the collector's local retention)."""
    default = Path(settings.MARKET_DATA_DIR).parent / (Path(settings.MARKET_DATA_DIR).name + "-ml-spikes")
    return Path(settings.ML_SPIKE_DATA_DIR or default)


def training_cache_dir() -> Path:
    """Where archived day files (fetched back from S3 for training) are cached; never the collector's live
    directory, so its retention only ever sees what it wrote itself."""
    live = Path(settings.MARKET_DATA_DIR)
    default = live.parent / (live.name + "-training-cache")
    return Path(settings.ML_TRAINING_CACHE_DIR or default)


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
