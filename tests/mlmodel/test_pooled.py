"""The pooled LSTM (``mlmodel.services.pooled``): one model over many markets' windows, judged market by
market by the same walk-forward pipeline and gate; its compiled serving path equals torch per market."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from mlmodel.dataset import label_frame
from mlmodel.features import FeatureConfig, compute_features
from mlmodel.inference import Predictor
from mlmodel.lstm_kernel import LSTMWeights
from mlmodel.nets import PooledLSTMConfig, PooledLSTMRegressor
from mlmodel.services import train as train_service
from mlmodel.services.data import MarketData
from mlmodel.services.params import TrainParams
from mlmodel.services.pooled import pooled_pipeline_run
from mlmodel.ticks import constant_tick_fn
from mlmodel.training import load_artifact, save_artifact
from tests.mlmodel.synth import synthetic_market

torch.set_num_threads(1)


def _market(seed: int, signal: float, start_ms: int = 1_700_000_000_000) -> MarketData:
    book, trades = synthetic_market(8000, seed=seed, signal_strength=signal, start_ms=start_ms)
    frame = compute_features(
        book, trades, config=FeatureConfig(levels=5, depths=(1, 3, 5)), tick_fn=constant_tick_fn(1.0)
    )
    return MarketData(book=book, labelled=label_frame(frame, horizon_s=5.0), days=[])


def _params(**overrides: Any) -> TrainParams:
    p = {
        "market": "KRW-SIG",
        "horizon_s": 5.0,
        "window": 10,
        "hidden": 16,
        "epochs": 8,
        "patience": 3,
        "batch_size": 128,
        "lr": 3e-3,
        "seed": 0,
        "device": "cpu",
        "n_splits": 2,
        "train_stride": 2,
        "feature_levels": 5,
        "baselines": ("linear_ofi",),
    }
    p.update(overrides)
    return TrainParams(**p)


def test_pooled_model_gets_a_gate_decision_per_market_on_its_own_test_periods(monkeypatch):  # noqa: ANN001
    datas = {"KRW-SIG": _market(4, 2.0), "KRW-NOISE": _market(5, 0.0)}
    gated: list[tuple[str, int]] = []
    real_gate = train_service._gate_apply

    def spy(report, outcomes, *, params, frame, has_incumbent):  # noqa: ANN001, ANN202
        gated.append((params.market, sum(len(o["lstm"].test_y) for o in outcomes.values())))
        return real_gate(report, outcomes, params=params, frame=frame, has_incumbent=has_incumbent)

    monkeypatch.setattr(train_service, "_gate_apply", spy)
    result = pooled_pipeline_run(params=_params(), datas=datas)
    assert result.markets == ("KRW-NOISE", "KRW-SIG") and not result.failed
    # One model per split, trained on both markets' windows, each with its own normalisation.
    for bundle in result.models.values():
        assert bundle.markets == ("KRW-NOISE", "KRW-SIG")
        assert bundle.meta["markets_trained"] == ["KRW-NOISE", "KRW-SIG"]
        assert not np.allclose(bundle.normalizers[0].mean, bundle.normalizers[1].mean)
    # The gate ran once per market, on that market's own test samples.
    assert sorted(m for m, _ in gated) == ["KRW-NOISE", "KRW-SIG"]
    for market, n_test in gated:
        splits = result.results[market].report["evaluation"]["splits"]
        assert n_test == sum(s["samples"]["test"] for s in splits)
        assert result.results[market].report["data"]["market"] == market
    sig = result.results["KRW-SIG"].report["gate"]["lstm"]
    noise = result.results["KRW-NOISE"].report["gate"]["lstm"]
    # The planted signal is learnt through the pooled model; the market without one is refused.
    assert sig["checks"]["beats_persistence"], sig["reason"]
    assert noise["passed"] is False and result.results["KRW-NOISE"].report["promotable"] is False
    s = result.results["KRW-SIG"].report["evaluation"]["summary"]
    assert s["lstm"]["test"]["mse"] < s["persistence"]["test"]["mse"]
    # Both markets' versions would store the same artifact: the last split's pooled model.
    assert result.results["KRW-SIG"].bundle is result.results["KRW-NOISE"].bundle


def test_pooled_model_passes_the_gate_where_the_signal_is_planted_and_is_refused_elsewhere(monkeypatch):  # noqa: ANN001
    # As in the per-market nightly test: this generator's signal is linear in the OFI, so ridge-OFI finds it
    # as well as the LSTM and the cheap-baseline bar would (rightly) refuse both markets; without that bar
    # the rest of the real gate decides (thresholds unchanged, fewer round trips for a few minutes of data).
    from mlmodel import gate

    monkeypatch.setattr(gate, "CHEAP_BASELINES", ())
    datas = {"KRW-SIG": _market(4, 6.0), "KRW-NOISE": _market(5, 0.0)}
    result = pooled_pipeline_run(params=_params(gate_min_round_trips=5, backtest_threshold=0.0), datas=datas)
    sig = result.results["KRW-SIG"].report
    noise = result.results["KRW-NOISE"].report
    assert sig["promotable"] is True, sig["gate"]["lstm"]["reason"]
    assert noise["promotable"] is False
    assert not noise["gate"]["lstm"]["checks"]["beats_persistence"], noise["gate"]["lstm"]["reason"]


def _pooled_bundle() -> Any:
    torch.manual_seed(0)
    net = PooledLSTMRegressor(PooledLSTMConfig(n_features=6, n_markets=3, embed=4, hidden=8)).eval()
    bundle = load_artifact(save_artifact(_with_model(net)))
    return bundle


def _with_model(net: PooledLSTMRegressor) -> Any:
    from mlmodel.dataset import Normalizer
    from mlmodel.features import FeatureConfig
    from mlmodel.training import ModelBundle, TrainConfig

    rng = np.random.default_rng(0)
    norms = tuple(Normalizer(mean=rng.normal(0, 1, 6), std=rng.uniform(0.5, 2, 6)) for _ in range(3))
    return ModelBundle(
        model=net,
        train_config=TrainConfig(window=12, hidden=8),
        normalizer=norms[0],
        feature_config=FeatureConfig(levels=5),
        feature_names=tuple(f"f{i}" for i in range(6)),
        horizon_s=5.0,
        y_scale=1e-3,
        markets=("KRW-A", "KRW-B", "KRW-C"),
        normalizers=norms,
    )


def test_pooled_artifact_round_trips_and_the_compiled_kernel_folds_the_embedding_exactly() -> None:
    bundle = _pooled_bundle()
    assert bundle.pooled and bundle.markets == ("KRW-A", "KRW-B", "KRW-C")
    predictor = Predictor(bundle)
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, (3, 12, 6)).astype(np.float32)
    ids = predictor.market_ids(["KRW-A", "KRW-B", "KRW-C"])
    torch_out = predictor.predict_raw(raw, market_ids=ids)
    # Each market's own normalisation: the same window means something else in another market.
    assert len(set(np.round(predictor.predict_raw(np.repeat(raw[:1], 3, 0), market_ids=ids), 12))) == 3
    weights = LSTMWeights.of(bundle.model)
    assert weights is not None and weights.bias.shape == (3, weights.gates)
    z = (raw - predictor.mean_table[ids][:, None, :]) * predictor.inv_std_table[ids][:, None, :]
    z = np.clip(np.nan_to_num(z), -predictor.clip, predictor.clip)
    kernel = weights.forward_windows(z, ids).astype(np.float64) * predictor.y_scale
    np.testing.assert_allclose(kernel, torch_out, rtol=2e-3, atol=1e-7)
    with pytest.raises(ValueError):
        predictor.predict_raw(raw)  # a pooled model needs each window's market
    latest = {"KRW-B": raw[1], "KRW-Z": raw[0]}  # a market it was not trained on is left out
    assert set(predictor.predict_markets(latest)) == {"KRW-B"}


# --- Bounded nightly work (issue 16): the pooled memory and a market's evaluation do not grow with days.


def test_market_sample_keeps_every_row_within_the_budget_and_matches_the_full_data_sets() -> None:
    from mlmodel.evaluation import split_fit_ends, split_normalised
    from mlmodel.services.pooled import MarketSample, pooled_splits

    data = _market(4, 2.0)
    lf = data.labelled
    sample = MarketSample.of(lf, window=10, rows=len(lf))
    assert len(sample.ts) == len(lf)
    split = pooled_splits({"KRW-SIG": sample}, n_splits=2)[1]
    norm, tr, va = sample.split_sets(split, train_stride=2, max_val=None)
    tr_full, va_full = split_fit_ends(lf, split, window=10, train_stride=2)
    norm_full, _ = split_normalised(lf, split)
    np.testing.assert_array_equal(tr.ends, tr_full)
    np.testing.assert_array_equal(va.ends, va_full)
    np.testing.assert_allclose(norm.mean, norm_full.mean)
    np.testing.assert_allclose(norm.std, norm_full.std)


def test_market_sample_past_its_budget_keeps_whole_windows_in_blocks_spread_over_the_data() -> None:
    from mlmodel.services.pooled import MarketSample

    lf = _market(4, 2.0).labelled
    window, budget = 10, 1_000
    sample = MarketSample.of(lf, window=window, rows=budget, block_ends=90)  # 24 blocks (MIN_BLOCKS) of 41
    assert len(sample.ts) <= budget and sample.rows_total == len(lf)
    # Blocks reach from the start to the end of the data, not only its first rows.
    assert sample.ts[0] == lf.frame.ts[0] and sample.ts[-1] == lf.frame.ts[-1]
    # Every window end it offers has its whole window among the kept rows, consecutive in the original data.
    pos = np.searchsorted(lf.frame.ts, sample.ts)
    for j in np.flatnonzero(sample.can_end):
        assert j >= window - 1 and pos[j] - pos[j - window + 1] == window - 1
        assert lf.frame.valid[pos[j] - window + 1 : pos[j] + 1].all()
    assert sample.can_end.sum() > 0.8 * 24 * (41 - window + 1)


def test_pooled_run_from_a_loader_reads_each_market_twice_and_trains_on_its_budget_only(monkeypatch) -> None:  # noqa: ANN001
    datas = {"KRW-SIG": _market(4, 2.0), "KRW-NOISE": _market(5, 0.0)}
    reads: list[str] = []
    got: dict[str, Any] = {}

    def load(market: str) -> MarketData:
        reads.append(market)
        return datas[market]

    def on_result(market: str, data: MarketData, res: Any) -> None:
        got[market] = res.report

    budget = 2_000
    result = pooled_pipeline_run(
        params=_params(pooled_rows_per_market=budget, max_eval_windows=500),
        markets=["KRW-SIG", "KRW-NOISE"],
        load=load,
        on_result=on_result,
    )
    assert sorted(reads) == ["KRW-NOISE", "KRW-NOISE", "KRW-SIG", "KRW-SIG"]
    assert not result.results and set(got) == set(result.reports) == {"KRW-NOISE", "KRW-SIG"}
    for bundle in result.models.values():
        assert all(n <= budget for n in bundle.meta["rows_sampled"].values())
        assert bundle.meta["train_samples"] <= 2 * budget
    # Each market's evaluation is held to ML_MAX_EVAL_WINDOWS decisions per split, spread over the period.
    for report in got.values():
        for s in report["evaluation"]["splits"]:
            assert s["samples"]["test_decisions"] <= 500 and s["samples"]["test_decision_stride"] >= 2
            assert s["samples"]["val"] <= 500


def test_an_unreadable_market_is_listed_and_the_others_are_trained() -> None:
    from mlmodel.services.params import TrainingFailed

    datas = {"KRW-SIG": _market(4, 2.0)}

    def load(market: str) -> MarketData:
        if market not in datas:
            raise TrainingFailed("no order-book day files")
        return datas[market]

    result = pooled_pipeline_run(params=_params(), markets=["KRW-SIG", "KRW-GONE"], load=load)
    assert result.markets == ("KRW-SIG",) and set(result.results) == {"KRW-SIG"}
    assert result.failed == {"KRW-GONE": "no order-book day files"}


def test_the_evaluation_normalises_a_market_as_serving_does_with_the_models_own_statistics() -> None:
    """A market sampled for training has statistics from its sample; its evaluation must feed the model what
    serving will (raw windows through the model's normaliser of that market), not the split's full-data
    statistics."""
    from mlmodel.dataset import Normalizer, WindowSet
    from mlmodel.training import PooledSplitModel

    bundle = _pooled_bundle()
    rng = np.random.default_rng(2)
    raw = rng.normal(0.3, 1.7, (400, 6)).astype(np.float32)
    full = Normalizer.fit(raw)  # what walk_forward_evaluate normalises with
    ends = np.arange(11, 400, 7)
    ws = WindowSet(X=full.transform(raw), ends=ends, y=np.zeros(len(ends), np.float32), ts=ends, window=12)
    got = PooledSplitModel(bundle, "KRW-B", raw_X=raw).predict(ws)
    rows = ends[:, None] - np.arange(11, -1, -1)[None, :]
    own = bundle.normalizers[1].transform(raw[rows].reshape(-1, 6)).reshape(len(ends), 12, 6)
    np.testing.assert_allclose(got, bundle.predict_normalised(own, market="KRW-B"))
    assert not np.allclose(got, PooledSplitModel(bundle, "KRW-B").predict(ws))  # the split's statistics
    with pytest.raises(ValueError):
        PooledSplitModel(bundle, "KRW-B", raw_X=raw[:100]).predict(ws)
