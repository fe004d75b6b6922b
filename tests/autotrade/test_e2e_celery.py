"""End to end through a real Celery worker process on Redis: the collector's batch goes to the ml queue by
task name, the worker predicts with the active model, hands the prediction to the default queue, and the
same worker's auto-trading task places paper orders filled on the simulator's book. A promotion switches
the served model (bullish -> bearish) and the session sells."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile

from autotrade.models import AutoTradeDecision
from autotrade.services import autotrade_start
from celery_app import app
from market import batchwire
from market.collector import celery_prediction_sink
from mlmodel.dataset import Normalizer
from mlmodel.features import FeatureConfig, feature_names
from mlmodel.models import ModelVersion, Prediction
from mlmodel.nets import LSTMConfig, LSTMRegressor
from mlmodel.services.registry import model_promote
from mlmodel.training import ModelBundle, TrainConfig, save_artifact
from tests import live
from tests.accounts.factories import UserFactory
from tests.trading.conftest import BTC_ASKS, BTC_BIDS
from trading.models import OrderState

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
WINDOW = 8


def constant_model(predicted_return: float) -> bytes:
    """A real LSTM artifact whose output is ``predicted_return`` whatever the book (zero weights, a bias)."""
    cfg = FeatureConfig(levels=3)
    names = feature_names(cfg)
    net = LSTMRegressor(LSTMConfig(n_features=len(names), hidden=4))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.fill_(1.0)
    bundle = ModelBundle(
        model=net,
        train_config=TrainConfig(window=WINDOW, hidden=4),
        normalizer=Normalizer(mean=np.zeros(len(names)), std=np.ones(len(names))),
        feature_config=cfg,
        feature_names=names,
        horizon_s=10.0,
        y_scale=predicted_return,
    )
    return save_artifact(bundle)


def register(version: int, predicted_return: float) -> ModelVersion:
    cfg = FeatureConfig(levels=3)
    v = ModelVersion(
        market="KRW-BTC",
        version=version,
        name="const",
        horizon_s=10.0,
        feature_version="ob-features-1",
        feature_names=list(feature_names(cfg)),
        hyperparameters={},
        artifact_sha256=f"const-{version}-{time.time_ns()}",
    )
    v.artifact.save(f"const-{version}.pt", ContentFile(constant_model(predicted_return)), save=False)
    v.save()
    return v


def batch(n: int, start_ms: int) -> dict[str, Any]:
    ts = [start_ms + 200 * i for i in range(n)]
    return {
        "KRW-BTC": {
            "ts": ts,
            "ask_px": [[p for p, _ in BTC_ASKS]] * n,
            "ask_sz": [[s for _, s in BTC_ASKS]] * n,
            "bid_px": [[p for p, _ in BTC_BIDS]] * n,
            "bid_sz": [[s for _, s in BTC_BIDS]] * n,
            "trades": {"ts": [ts[-1]], "price": [BTC_ASKS[0][0]], "volume": [0.001], "side": ["BID"]},
        }
    }


@pytest.fixture
def worker_env(sim: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The worker is another process: it reads the simulator's book over REST and artifacts from its
    # default storage (the test settings' MEDIA_ROOT), so this test stores them there too.
    monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
    media = live.ROOT / "var" / "media"
    settings.MEDIA_ROOT = media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    yield sim
    for v in ModelVersion.objects.filter(name="const"):
        v.artifact.delete(save=False)


def test_session_trades_through_a_real_celery_worker(worker_env, celery_worker_process):
    bull = register(1, 0.01)
    bear = register(2, -0.01)
    model_promote(version=bull)
    user = UserFactory()
    session = autotrade_start(
        user=user, market="KRW-BTC", threshold=Decimal("0.0005"), order_krw=Decimal(100_000), cooldown_s=0
    )
    t0 = int(time.time() * 1000)
    app.send_task("mlmodel.tasks.ingest_market_data", kwargs={"batch": batch(12, t0)}, queue="ml")

    def decided(action: str) -> AutoTradeDecision | None:
        return AutoTradeDecision.objects.filter(
            session=session, action=action, order__state=OrderState.DONE
        ).first()

    buy = live.wait_until(lambda: decided("buy"), timeout=60, message="auto buy filled by the worker")
    assert buy.predicted_return == Decimal("0.01") and buy.model_version == bull.label
    assert buy.cost == Decimal("0.001005")  # both fees + half of a one-tick spread at 100,000,000
    model_promote(version=bear)
    # The next batch as the collector sends it: one packed block of binary arrays (base64 in the JSON).
    packed = batchwire.encode(batchwire.from_columns(batch(3, t0 + 12 * 200)))
    celery_prediction_sink()(packed)
    sell = live.wait_until(lambda: decided("sell"), timeout=60, message="auto sell filled by the worker")
    assert sell.predicted_return == Decimal("-0.01") and sell.model_version == bear.label
    assert sell.order.volume == buy.order.executed_volume
    assert list(Prediction.objects.order_by("ts").values_list("model_version_id", flat=True)) == [
        bull.pk,
        bear.pk,
    ]
