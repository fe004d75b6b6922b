"""End to end on the product's walk-forward run (``mlmodel.services.train.pipeline_run``): features ->
walk-forward LSTM vs baselines -> backtest -> gate -> report, on synthetic data where the signal is learnable
and on the real Upbit ADA sample (which must only run and report honestly)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile

from market import dayfiles
from market.dayfiles import book_arrays, sample_csv_tables, trade_arrays
from mlmodel.dataset import label_frame
from mlmodel.features import FeatureConfig, compute_features
from mlmodel.inference import Predictor, latest_window
from mlmodel.models import ModelVersion
from mlmodel.report import json_safe
from mlmodel.services.data import MarketData
from mlmodel.services.params import TrainParams
from mlmodel.services.train import PipelineResult, pipeline_run
from mlmodel.ticks import constant_tick_fn
from mlmodel.training import save_artifact
from tests.mlmodel.synth import synthetic_market

torch.set_num_threads(1)
SAMPLE = dayfiles.SAMPLE_CSV


def _finite(d: object) -> bool:
    if isinstance(d, dict):
        return all(_finite(v) for v in d.values())
    if isinstance(d, float):
        return math.isfinite(d)
    return True


def _assert_time_ordered_without_leakage(result: PipelineResult, *, horizon_s: float, last_ts: int) -> None:
    """Train, validation and test periods follow each other in time; a training (validation) window's label
    is known before the next period starts; consecutive test blocks are adjacent and the last ends with the
    data."""
    horizon_ms = int(round(horizon_s * 1000))
    splits = result.report["evaluation"]["splits"]
    tests = []
    for s in splits:
        sp, ts = s["split"], s["sample_ts"]
        assert sp["train"][1] <= sp["val"][0] and sp["val"][1] <= sp["test"][0]
        assert sp["train"][0] <= ts["train"][0] and ts["train"][1] + horizon_ms < sp["train"][1]
        assert sp["val"][0] <= ts["val"][0] and ts["val"][1] + horizon_ms < sp["val"][1]
        assert sp["test"][0] <= ts["test"][0] and ts["test"][1] < sp["test"][1]
        tests.append(sp["test"])
    for (_, end), (start, _) in zip(tests, tests[1:], strict=False):
        assert end == start
    assert tests[-1][1] > last_ts


def _incumbent(bundle: Any) -> ModelVersion:
    """An active model as the registry hands it to a training run (its artifact readable); nothing stored."""
    version = ModelVersion(market="KRW-SYN", name="incumbent", version=1)
    version.artifact = ContentFile(save_artifact(bundle), name="incumbent.pt")  # type: ignore[assignment]
    return version


def test_lstm_beats_persistence_where_the_signal_is_learnable() -> None:
    # The product gate blocks its bootstrap by the label overlap: a stronger planted signal than a bare
    # evaluation needs, so the LSTM beats persistence significantly.
    book, trades = synthetic_market(8000, seed=4, signal_strength=2.0)
    frame = compute_features(
        book, trades, config=FeatureConfig(levels=5, depths=(1, 3, 5)), tick_fn=constant_tick_fn(1.0)
    )
    data = MarketData(book=book, labelled=label_frame(frame, horizon_s=5.0), days=[])
    W = 10
    params = TrainParams(
        market="KRW-SYN",
        horizon_s=5.0,
        window=W,
        hidden=16,
        epochs=8,
        patience=3,
        batch_size=128,
        lr=3e-3,
        seed=0,
        device="cpu",
        n_splits=2,
        train_stride=2,
        feature_levels=5,
        baselines=("linear_ofi",),
    )
    events: list[dict[str, Any]] = []
    result = pipeline_run(params=params, data=data, progress=events.append)
    _assert_time_ordered_without_leakage(result, horizon_s=5.0, last_ts=int(frame.ts[-1]))
    s = result.report["evaluation"]["summary"]
    assert set(s) == {"persistence", "linear_ofi", "lstm"}
    assert s["lstm"]["val"]["mse"] < s["persistence"]["val"]["mse"]
    assert s["lstm"]["test"]["mse"] < s["persistence"]["test"]["mse"]
    assert s["lstm"]["test"]["dir_acc"] > 0.6
    gate = result.report["gate"]["lstm"]
    assert gate["checks"]["beats_persistence"], gate["reason"]  # significantly, on the test periods
    assert result.metrics["promotable"] is gate["passed"] is result.report["promotable"]
    # Every model fitted on every split, the LSTM's epochs reported with an ETA, then the report.
    stages = [str(e["stage"]) for e in events]
    for split in (1, 2):
        for model in ("persistence", "linear_ofi", "lstm"):
            assert f"split {split}/2: fitting {model}" in stages
        assert f"split {split}/2: training lstm" in stages
    assert stages[-1] == "writing report"
    assert all(math.isfinite(e["eta_seconds"]) for e in events if "epoch" in e)
    assert set(result.plots) >= {"pred_vs_realised", "calibration", "equity_split_0", "equity_split_1"}
    assert all(p[:4] == b"\x89PNG" for p in result.plots.values())
    json.dumps(result.report)  # storable as JSON
    # The artifact serves the same model: predict the newest window of the series.
    window = latest_window(frame, W)
    assert window is not None
    pred = Predictor.from_bytes(save_artifact(result.bundle)).predict_markets({"KRW-SYN": window})
    assert math.isfinite(pred["KRW-SYN"])
    # An incumbent evaluated on the same splits: a copy of the candidate is not strictly better than itself.
    again = pipeline_run(params=params, data=data, incumbent=_incumbent(result.bundle))
    assert "incumbent" in again.report["evaluation"]["summary"]
    assert isinstance(again.report["promotable"], bool)
    assert again.report["data"]["incumbent"] == "incumbent v1"


@pytest.mark.skipif(not SAMPLE.exists(), reason="the real Upbit sample is not available")
def test_whole_pipeline_runs_on_the_real_ada_sample(artifacts_dir: Path) -> None:
    book_t, trade_t = sample_csv_tables(SAMPLE)
    book, trades = book_arrays(book_t), trade_arrays(trade_t)
    frame = compute_features(book, trades)  # Upbit's KRW tick table: 1 KRW at ~430 KRW
    data = MarketData(book=book, labelled=label_frame(frame, horizon_s=30.0), days=[])
    params = TrainParams(
        market="KRW-ADA",
        horizon_s=30.0,
        window=20,
        hidden=8,
        epochs=3,
        patience=2,
        batch_size=128,
        device="cpu",
        n_splits=2,
        backtest_latency_ms=500,
        baselines=("linear_ofi", "gbt"),
        min_test_samples=1,
    )
    result = pipeline_run(params=params, data=data)
    _assert_time_ordered_without_leakage(result, horizon_s=30.0, last_ts=int(frame.ts[-1]))
    summary = result.report["evaluation"]["summary"]
    assert set(summary) == {"persistence", "linear_ofi", "gbt", "lstm"}
    for name, s in summary.items():
        assert s["n_splits"] == 2, name
        assert _finite(s["val"]) and _finite(s["test"]) and _finite(s["backtest"]), name
    for split in result.report["evaluation"]["splits"]:
        for m in split["models"].values():
            assert np.isfinite(list(m["backtest"].values())).all()
    # Honest: whatever the outcome, the verdict says it, and promotion follows the promotion gate.
    assert result.report["promotable"] == result.report["gate"]["lstm"]["passed"]
    (artifacts_dir / "ml_ada_report.json").write_text(json.dumps(json_safe(result.report), indent=1))
    print(result.report["verdict"])
