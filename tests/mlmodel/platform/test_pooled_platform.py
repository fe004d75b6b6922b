"""The pooled model in the product: the nightly job (one pooled run plus ML_PER_MARKET_MODELS' own runs),
one version per market sharing one artifact, and serving every market of it in one forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from market.dayfiles import BookArrays, TradeArrays
from mlmodel import serving, tasks
from mlmodel.features import compute_features
from mlmodel.inference import Predictor, latest_window
from mlmodel.models import ModelStatus, ModelVersion, Prediction, TrainingRun, TrainingState
from mlmodel.services.params import POOLED_MARKET, TrainParams
from mlmodel.services.pooled import POOLED_NAME, pooled_model_train
from mlmodel.services.registry import model_promote
from mlmodel.services.runs import nightly_retrain, nightly_retrain_prepare
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days
from tests.mlmodel.platform.test_serving import batch_of

pytestmark = pytest.mark.django_db

MARKETS = [MARKET, "KRW-ETH", "KRW-XRP"]


def test_nightly_runs_the_pooled_model_and_the_chosen_own_models(_ml_env: dict[str, Path], settings):  # noqa: ANN001
    settings.ML_PER_MARKET_MODELS = ["KRW-ETH"]
    for i, market in enumerate(MARKETS[:2]):
        synthetic_days(_ml_env["data"], market, seed=1 + i)
    runs = nightly_retrain(markets=[*MARKETS], params=small_params())  # KRW-XRP has no day files
    assert [r.market for r in runs] == [POOLED_MARKET, "KRW-ETH"]
    assert all(r.state == TrainingState.SUCCEEDED for r in runs), [r.message for r in runs]
    pooled, own = runs
    assert pooled.params["markets"] == [MARKET, "KRW-ETH"]
    # The pooled run decided per market, through each market's own gate.
    assert set(pooled.decision["markets"]) == {MARKET, "KRW-ETH"}
    for market, decision in pooled.decision["markets"].items():
        version = ModelVersion.objects.get(market=market, name=POOLED_NAME)
        assert decision["gate"] == version.report["gate"]["lstm"]
        assert version.report["data"]["market"] == market
        assert version.hyperparameters["pooled"]["markets"] == [MARKET, "KRW-ETH"]
    shared = ModelVersion.objects.filter(name=POOLED_NAME)
    assert len({v.artifact.name for v in shared}) == 1  # one artifact file for every market's version
    assert len({v.artifact_sha256 for v in shared}) == 1
    # The chosen market also got a model of its own; the other did not.
    assert own.result_version.name == "lstm-KRW-ETH"
    assert not ModelVersion.objects.filter(market=MARKET).exclude(name=POOLED_NAME).exists()
    # Within the lease of runs: a pooled run already queued is not queued again.
    settings.ML_PER_MARKET_MODELS = []
    TrainingRun.objects.create(market=POOLED_MARKET, params={}, state=TrainingState.QUEUED)
    assert nightly_retrain_prepare(markets=[*MARKETS], params=small_params()) == []


def test_nightly_task_reads_ml_per_market_models(_ml_env: dict[str, Path], settings):  # noqa: ANN001
    settings.ML_PER_MARKET_MODELS = [MARKET]
    synthetic_days(_ml_env["data"], MARKET)
    out = tasks.nightly_retrain.run(markets=[MARKET])
    assert [o["market"] for o in out] == [POOLED_MARKET, MARKET]
    settings.ML_PER_MARKET_MODELS = []
    TrainingRun.objects.all().delete()
    assert [o["market"] for o in tasks.nightly_retrain.run(markets=[MARKET])] == [POOLED_MARKET]


def test_serving_predicts_every_market_of_a_pooled_model_in_one_pass(_ml_env: dict[str, Path], monkeypatch):  # noqa: ANN001
    books = {m: synthetic_days(_ml_env["data"], m, seed=3 + i) for i, m in enumerate(MARKETS)}
    result = pooled_model_train(
        params=TrainParams.from_dict(small_params(market=POOLED_MARKET, markets=MARKETS)), markets=MARKETS
    )
    assert set(result.versions) == set(MARKETS)
    for version in result.versions.values():
        model_promote(version=version)
    assert ModelVersion.objects.filter(status=ModelStatus.ACTIVE).count() == 3
    calls: list[int] = []
    real = serving.live_predictions

    def counting(state, spec, predictor, midx):  # noqa: ANN001, ANN202
        calls.append(len(midx))
        return real(state, spec, predictor, midx)

    monkeypatch.setattr(serving, "live_predictions", counting)
    for lo in (0, 20):
        batch = {m: batch_of(*books[m], lo, lo + 20) for m in MARKETS}
        assert tasks.ingest_market_data.run(batch=batch) == 3
    assert calls == [3, 3]  # one forward pass over the three markets, per batch
    server = serving.get_server()
    assert len(server._by_sha) == 1  # the shared artifact is loaded once
    for market, version in result.versions.items():
        latest = Prediction.objects.filter(market=market).latest("ts")
        assert latest.model_version_id == version.pk
    # Each market's prediction is the pooled model's for that market (its normalisation and embedding),
    # exactly what the offline pipeline computes on the same history.
    predictor = Predictor.from_bytes(result.versions[MARKET].artifact.open("rb").read())
    assert predictor.markets == tuple(sorted(MARKETS))
    for market in MARKETS:
        book, trades = books[market]
        sub = BookArrays(
            ts=book.ts[:40], ask_px=book.ask_px[:40], ask_sz=book.ask_sz[:40],
            bid_px=book.bid_px[:40], bid_sz=book.bid_sz[:40],
        )  # fmt: skip
        t_hi = int(np.searchsorted(trades.ts, book.ts[39], side="right"))
        tsub = TradeArrays(
            ts=trades.ts[:t_hi],
            price=trades.price[:t_hi],
            volume=trades.volume[:t_hi],
            side=trades.side[:t_hi],
        )
        frame = compute_features(sub, tsub, config=predictor.bundle.feature_config)
        x = latest_window(frame, predictor.window)
        offline = float(predictor.predict_raw(x[None], market_ids=predictor.market_ids([market]))[0])
        served = Prediction.objects.filter(market=market).latest("ts").predicted_return
        assert served == pytest.approx(offline, rel=1e-4, abs=1e-10), market
