"""Auto-trading fixtures: the trading fixtures (the Upbit simulator, users, an API client), an active model
for the markets (sessions refuse markets no model serves), predictions as the ML worker hands them over, and
a wide known book with hand-computable costs."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from mlmodel.models import ModelVersion
from mlmodel.services.registry import model_promote
from tests.trading.conftest import api, live_user, other_user, sim, user  # noqa: F401 - fixtures

# Book for the hand-computed cases: mid 100,000,000, spread 200,000 -> half-spread exactly 0.1 %.
WIDE_ASKS = [(100_100_000.0, 1.0), (100_200_000.0, 1.0)]
WIDE_BIDS = [(99_900_000.0, 1.0), (99_800_000.0, 1.0)]
_ts = itertools.count(1_800_000_000_000, 1000)


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


@pytest.fixture
def active_models(db: Any) -> dict[str, ModelVersion]:
    out = {}
    for market in ("KRW-BTC", "KRW-ETH"):
        v = ModelVersion(
            market=market,
            version=1,
            name=f"lstm-{market}",
            horizon_s=10.0,
            feature_version="ob-features-1",
            feature_names=["x"],
            hyperparameters={},
        )
        v.artifact.save("m.pt", ContentFile(b"not used here"), save=False)
        v.save()
        out[market] = model_promote(version=v)
    return out


@pytest.fixture
def wide_book(sim: Any) -> Any:  # noqa: F811
    sim.set_book("KRW-BTC", WIDE_ASKS, WIDE_BIDS)
    return sim


def prediction(r: float, *, market: str = "KRW-BTC", ts: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "market": market,
        "ts": next(_ts) if ts is None else ts,
        "predicted_return": r,
        "horizon_s": 10.0,
        "model_version": "lstm-KRW-BTC v1",
        "best_bid": 99_900_000.0,
        "best_ask": 100_100_000.0,
        "published_at": time.time(),
        **extra,
    }
