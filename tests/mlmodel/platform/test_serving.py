"""ingest_market_data: rolling windows in the worker, batched prediction, stored + published + handed over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.base import ContentFile

from celery_app import app
from market.dayfiles import BookArrays, TradeArrays
from mlmodel import serving, tasks
from mlmodel.features import compute_features
from mlmodel.inference import Predictor, latest_window
from mlmodel.models import ModelVersion, Prediction
from mlmodel.selectors import prediction_latest
from mlmodel.services.params import TrainParams
from mlmodel.services.registry import model_promote
from mlmodel.services.train import model_train
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days
from tests.mlmodel.platform.test_training import drain, listen
from tests.mlmodel.synth import column_batch

pytestmark = pytest.mark.django_db


def batch_of(book: BookArrays, trades: TradeArrays, lo: int, hi: int) -> dict[str, Any]:
    """Rows lo..hi-1 in the collector's column format (and the trades up to the last snapshot)."""
    return column_batch(book, trades, lo, hi, side_names=True)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict, str]]:
    calls: list[tuple[str, dict, str]] = []
    monkeypatch.setattr(
        app,
        "send_task",
        lambda name, kwargs=None, queue=None, **kw: calls.append((name, kwargs or {}, queue)),
    )
    return calls


def test_ingest_predicts_stores_publishes_and_hands_over_to_auto_trading(_ml_env: dict[str, Path], sent):
    book, trades = synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    channel = listen(f"market.{MARKET}")
    assert tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 0, 10)}) == 0  # < one window
    for k in range(1, 4):
        assert tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 10 * k, 10 * k + 10)}) == 1
    assert (
        tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 30, 40)}) == 0
    )  # replay: nothing new
    assert Prediction.objects.count() == 3
    latest = prediction_latest(market=MARKET)
    assert latest is not None and latest.model_version_id == version.pk
    assert int(latest.ts.timestamp() * 1000) == int(book.ts[39])
    # The live path computes exactly what the offline pipeline computes on the same history.
    predictor = Predictor.from_bytes(version.artifact.open("rb").read())
    sub = BookArrays(
        ts=book.ts[:40],
        ask_px=book.ask_px[:40],
        ask_sz=book.ask_sz[:40],
        bid_px=book.bid_px[:40],
        bid_sz=book.bid_sz[:40],
    )
    t_hi = int(np.searchsorted(trades.ts, book.ts[39], side="right"))
    tsub = TradeArrays(
        ts=trades.ts[:t_hi], price=trades.price[:t_hi], volume=trades.volume[:t_hi], side=trades.side[:t_hi]
    )
    x = latest_window(compute_features(sub, tsub, config=predictor.bundle.feature_config), predictor.window)
    assert latest.predicted_return == pytest.approx(float(predictor.predict_raw(x)[0]), rel=1e-5, abs=1e-12)
    events = [m for m in drain(channel) if m["type"] == "market.prediction"]
    assert len(events) == 3
    data = events[-1]["data"]
    assert data["market"] == MARKET and data["ts"] == int(book.ts[39]) and data["horizon_s"] == 10.0
    assert data["model_version"] == version.label
    assert data["predicted_return"] == pytest.approx(latest.predicted_return)
    assert [s[0] for s in sent] == [
        "autotrade.tasks.autotrade_on_prediction"
    ] * 3  # settings.MESSAGE_SUBSCRIBERS
    assert all(s[2] == "default" for s in sent)
    handed = sent[-1][1]["prediction"]
    assert handed["market"] == MARKET and handed["best_bid"] == book.bid_px[39, 0]
    assert handed["best_ask"] == book.ask_px[39, 0]


def test_ingest_batches_many_markets_and_reloads_on_promotion(_ml_env: dict[str, Path], sent):
    book, trades = synthetic_days(_ml_env["data"])
    v1 = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=v1)
    eth = ModelVersion(
        market="KRW-ETH",
        version=1,
        name="lstm-KRW-ETH",
        horizon_s=10.0,
        feature_version=v1.feature_version,
        feature_names=v1.feature_names,
        hyperparameters={},
        artifact_sha256=v1.artifact_sha256,
    )
    eth.artifact.save("eth.pt", ContentFile(v1.artifact.open("rb").read()), save=False)
    eth.save()
    model_promote(version=eth)
    both = {
        MARKET: batch_of(book, trades, 0, 20),
        "KRW-ETH": batch_of(book, trades, 0, 20),
        "KRW-XRP": batch_of(book, trades, 0, 20),
    }  # XRP has no active model: skipped
    assert tasks.ingest_market_data.run(batch=both) == 2
    assert set(Prediction.objects.values_list("market", flat=True)) == {MARKET, "KRW-ETH"}
    v2 = model_train(params=TrainParams.from_dict(small_params(seed=1))).version
    model_promote(version=v2)
    assert tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 20, 25)}) == 1
    assert prediction_latest(market=MARKET).model_version_id == v2.pk


def test_ingest_ignores_malformed_batches(_ml_env: dict[str, Path], sent):
    assert tasks.ingest_market_data.run(batch={"KRW-BTC": "nonsense", 5: {}}) == 0
    assert (
        tasks.ingest_market_data.run(batch={"KRW-BTC": {"ts": [1, 2], "ask_px": [[1.0]], "ask_sz": "x"}}) == 0
    )
    assert Prediction.objects.count() == 0 and sent == []


def test_live_features_on_a_bounded_tail_equal_the_offline_pipeline(_ml_env: dict[str, Path], sent, settings):
    """Hours of live data: the worker keeps a bounded window and featurises only the tail the newest window
    depends on; the prediction must equal the offline computation over the whole history."""
    settings.ML_LIVE_KEEP_S = 150  # > the features' look-back (130 s) + one window
    book, trades = synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    predictor = Predictor.from_bytes(version.artifact.open("rb").read())
    full = compute_features(book, trades, config=predictor.bundle.feature_config)
    step = 25
    for lo in range(0, 1500, step):
        tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, lo, lo + step)})
        end = lo + step - 1
        if end < 1000 or end % 100 != 99:
            continue
        latest = prediction_latest(market=MARKET)
        x = full.X[end - predictor.window + 1 : end + 1]
        assert latest.predicted_return == pytest.approx(
            float(predictor.predict_raw(x)[0]), rel=1e-4, abs=1e-10
        )
    server = serving.get_server()
    assert server.models[version.pk].spec.lstm is not None  # served by the compiled kernel (CPU, 1 layer)
    state = server.state
    m = state.index[MARKET]
    assert state.rows(m) <= 2048 and state.ts.shape[1] == 2048  # bounded memory: compacted, never grown
    assert state.newest_ts(m) - state.ts[m, 0] < 150_000 + 2048 * 250


def test_a_backlog_of_old_batches_is_not_predicted_on(_ml_env: dict[str, Path], sent, settings):
    """After the worker was busy, queued batches are minutes old: their books are gone, so no prediction
    (and no auto-trading) comes from them; the history still feeds the next fresh prediction."""
    import time

    settings.ML_MAX_DATA_AGE_S = 15
    book, trades = synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    shift = int(time.time() * 1000) - int(book.ts[199])  # the series ends now: rows 0..100 are >15 s old
    moved = BookArrays(
        ts=book.ts + shift, ask_px=book.ask_px, ask_sz=book.ask_sz, bid_px=book.bid_px, bid_sz=book.bid_sz
    )
    mtrades = TradeArrays(ts=trades.ts + shift, price=trades.price, volume=trades.volume, side=trades.side)
    assert tasks.ingest_market_data.run(batch={MARKET: batch_of(moved, mtrades, 0, 100)}) == 0
    assert Prediction.objects.count() == 0 and sent == []
    assert tasks.ingest_market_data.run(batch={MARKET: batch_of(moved, mtrades, 100, 200)}) == 1
    assert int(prediction_latest(market=MARKET).ts.timestamp() * 1000) == int(moved.ts[199])


def test_a_model_needing_more_levels_than_the_feed_sends_is_not_served(
    _ml_env: dict[str, Path], sent, settings, caplog
):
    """The collector sends MARKET_PREDICTION_LEVELS levels; a model reading deeper would be fed padding."""
    settings.MARKET_PREDICTION_LEVELS = 3  # the trained model reads 5 levels
    book, trades = synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    for k in range(4):
        assert tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 10 * k, 10 * k + 10)}) == 0
    assert Prediction.objects.count() == 0 and sent == []
    assert sum("MARKET_PREDICTION_LEVELS" in r.getMessage() for r in caplog.records) == 1  # said once
    settings.MARKET_PREDICTION_LEVELS = 15
    assert tasks.ingest_market_data.run(batch={MARKET: batch_of(book, trades, 40, 50)}) == 1


def test_packed_batches_from_the_collector_predict_like_column_batches(_ml_env: dict[str, Path], sent):
    from market import batchwire

    book, trades = synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    for k in range(4):
        body = batchwire.encode(batchwire.from_columns({MARKET: batch_of(book, trades, 10 * k, 10 * k + 10)}))
        assert tasks.ingest_market_data.run(packed=body) == (1 if k else 0)
    assert tasks.ingest_market_data.run(packed={**body, "book_n": [99]}) == 0  # malformed: dropped, no 500
    assert Prediction.objects.count() == 3


def test_a_backlog_is_reported_when_it_starts_and_when_it_is_over(caplog):
    """One warning as the worker falls behind and one with the count once fresh batches flow again, not a
    warning per skipped batch (a worker that started after the collector printed dozens)."""
    from mlmodel.serving import Server

    server = Server()
    with caplog.at_level("WARNING", logger="mlmodel.serving"):
        for k in range(30):
            server._note_stale(stale=1, fresh=False, max_age=15.0, now_ms=1_000 + 100 * k)
        server._note_stale(stale=0, fresh=True, max_age=15.0, now_ms=5_000)
        server._note_stale(stale=0, fresh=True, max_age=15.0, now_ms=6_000)
    messages = [r.getMessage() for r in caplog.records if r.name == "mlmodel.serving"]
    assert messages == [
        "behind the collector: skipping market batches older than 15.0 s",
        "caught up with the collector: skipped 30 stale market batch(es) in 4.0 s",
    ]
