"""The promotion gate (mlmodel/gate.py): refuses shuffled and circularly shifted labels, accepts a market
with a planted signal, never passes a model with 0 round trips, and its HAC variance keeps overlapping
labels from looking significant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from mlmodel.gate import GateConfig, LiveFit, diebold_mariano, gate_all, gate_decide

H = 5  # label horizon in rows: consecutive labels overlap by H - 1 increments
COST = 0.0015  # both fees + the spread, as a share of the price
ORDER_KRW = 100_000.0


@dataclass
class Outcome:
    test_y: np.ndarray
    test_pred: np.ndarray
    backtest: dict[str, Any] = field(default_factory=dict)


def _market(seed: int, n: int = 6000, beta: float = 0.002) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A feature x (AR(1)) that moves the next price increments, noise features, and H-row labels."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = 0.9 * x[t - 1] + rng.normal(0, 0.45)
    r = np.zeros(n + H + 1)
    r[1 : n + 1] = beta * x + rng.normal(0, 0.002, n)  # r[t + 1] follows x[t]
    y = np.array([r[t + 1 : t + 1 + H].sum() for t in range(n)])
    noise = rng.normal(0, 1, (n, 8))
    return x, noise, y


def _toy_backtest(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Long only: buy when the predicted return beats the cost, sell H rows later at the realised return."""
    pnl, trips, t = 0.0, 0, 0
    while t < len(pred):
        if pred[t] > COST:
            pnl += ORDER_KRW * (y[t] - COST)
            trips += 1
            t += H
        else:
            t += 1
    return {"net_pnl": pnl, "n_round_trips": float(trips)}


def _fit_predict(X: np.ndarray, y: np.ndarray, tr: slice, te: slice, ridge: float = 1e-3) -> np.ndarray:
    A = np.column_stack([X[tr], np.ones(X[tr].shape[0])])
    coef = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ y[tr])
    return np.column_stack([X[te], np.ones(X[te].shape[0])]) @ coef


def _walk_forward(x: np.ndarray, noise: np.ndarray, y: np.ndarray, n_splits: int = 3) -> dict[int, dict]:
    """Rolling train/test: the candidate sees x and the noise, the cheap baselines only noise features."""
    n = len(y)
    unit = n // (3 + n_splits)
    out: dict[int, dict[str, Outcome]] = {}
    for k in range(n_splits):
        tr = slice(k * unit, k * unit + 3 * unit - H)  # an embargo of H rows: no label crosses into test
        te = slice(k * unit + 3 * unit, k * unit + 4 * unit)
        models = {
            "lstm": _fit_predict(np.column_stack([x, noise]), y, tr, te),
            "linear_ofi": _fit_predict(noise[:, :4], y, tr, te),
            "gbt": _fit_predict(noise[:, 4:], y, tr, te),
            "persistence": np.zeros(te.stop - te.start),
        }
        out[k] = {m: Outcome(y[te], p, _toy_backtest(p, y[te])) for m, p in models.items()}
    return out


def test_planted_signal_passes() -> None:
    for seed in (0, 1, 2):
        x, noise, y = _market(seed)
        res = gate_decide(_walk_forward(x, noise, y), candidate="lstm", label_overlap_rows=H)
        assert res.passed, res.reason
        assert res.round_trips >= 20 and res.net_pnl > 0
        assert [c.against for c in res.comparisons][0] == "persistence"
        assert res.comparisons[1].against in ("linear_ofi", "gbt")  # the better of the two cheap baselines
        assert all(c.p_value < 0.05 and c.lag >= H for c in res.comparisons)
        assert "beats persistence" in res.reason


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_shuffled_labels_are_refused(seed: int) -> None:
    x, noise, y = _market(seed)
    y_null = np.random.default_rng(100 + seed).permutation(y)
    outcomes = _walk_forward(x, noise, y_null)
    for name, res in gate_all(outcomes, label_overlap_rows=H).items():
        assert not res.passed, (name, res.reason)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_circularly_shifted_labels_are_refused(seed: int) -> None:
    # A shift keeps the labels' own autocorrelation (the overlap) but breaks their link to the features.
    x, noise, y = _market(seed)
    y_null = np.roll(y, len(y) // 3 + 17 * seed)
    outcomes = _walk_forward(x, noise, y_null)
    for name, res in gate_all(outcomes, label_overlap_rows=H).items():
        assert not res.passed, (name, res.reason)


def test_a_model_with_zero_trades_never_passes() -> None:
    x, noise, y = _market(0)
    outcomes = _walk_forward(x, noise, y)
    for per in outcomes.values():
        per["lstm"].backtest = {"net_pnl": 0.0, "n_round_trips": 0.0}
    res = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H)
    assert not res.passed
    assert res.checks["beats_persistence"] and res.checks["beats_best_baseline"]  # the loss alone is fine
    assert "0 round trips" in res.reason


def test_too_few_round_trips_or_a_loss_are_refused() -> None:
    x, noise, y = _market(0)
    outcomes = _walk_forward(x, noise, y)
    trips = gate_decide(outcomes, candidate="lstm", config=GateConfig(min_round_trips=10_000))
    assert not trips.passed and "(< 10000)" in trips.reason
    for per in outcomes.values():
        per["lstm"].backtest = {"net_pnl": -5.0, "n_round_trips": 50.0}
    loss = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H)
    assert not loss.passed and "net P&L" in loss.reason


def test_not_worse_than_the_active_model_on_the_same_periods() -> None:
    x, noise, y = _market(0)
    outcomes = _walk_forward(x, noise, y)
    cand = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H)
    for per in outcomes.values():
        bt = per["lstm"].backtest
        per["incumbent"] = Outcome(
            per["lstm"].test_y, per["lstm"].test_pred, {**bt, "net_pnl": bt["net_pnl"] + 1}
        )
    res = gate_decide(outcomes, candidate="lstm", incumbent="incumbent", label_overlap_rows=H)
    assert cand.passed and not res.passed
    assert "below the active model" in res.reason


def test_baselines_that_win_are_named_in_the_reason() -> None:
    # The cheap baseline sees the signal too: the candidate beats persistence but not it.
    x, noise, y = _market(1)
    outcomes = _walk_forward(x, noise, y)
    for per in outcomes.values():
        per["linear_ofi"].test_pred = per["lstm"].test_pred.copy()
    res = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H)
    assert not res.passed
    assert res.reason.startswith("beats persistence but not ridge-OFI (p=")


def test_the_live_feed_must_fit() -> None:
    x, noise, y = _market(0)
    outcomes = _walk_forward(x, noise, y)
    fits = LiveFit(
        model_levels=10, feed_levels=15, window_rows=30, row_interval_s=1.0, lookback_s=130, keep_s=300
    )
    too_many = LiveFit(
        model_levels=20, feed_levels=15, window_rows=30, row_interval_s=1.0, lookback_s=130, keep_s=300
    )
    too_long = LiveFit(
        model_levels=10, feed_levels=15, window_rows=300, row_interval_s=1.0, lookback_s=130, keep_s=300
    )
    assert gate_decide(outcomes, candidate="lstm", label_overlap_rows=H, live=fits).passed
    r1 = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H, live=too_many)
    r2 = gate_decide(outcomes, candidate="lstm", label_overlap_rows=H, live=too_long)
    assert not r1.passed and "20 price levels" in r1.reason
    assert not r2.passed and "430 s of history" in r2.reason


def test_hac_variance_keeps_overlapping_labels_honest() -> None:
    """Under the null (two equally good forecasts) with H-row overlapping errors, the HAC test rejects at
    about alpha; the same test with no lag rejects far too often."""
    rng = np.random.default_rng(7)
    reject_hac = reject_naive = 0
    trials = 300
    for _ in range(trials):
        e = rng.normal(0, 1, (2, 400 + H))
        la = np.convolve(e[0], np.ones(H), "valid") ** 2  # overlapping sums: autocorrelated losses
        lb = np.convolve(e[1], np.ones(H), "valid") ** 2
        reject_hac += diebold_mariano([la], [lb], lag=2 * H).p_value < 0.05
        reject_naive += diebold_mariano([la], [lb], lag=0).p_value < 0.05
    assert reject_hac / trials < 0.09
    assert reject_naive / trials > 1.5 * reject_hac / trials


def test_diebold_mariano_pools_periods_and_sees_a_real_gain() -> None:
    rng = np.random.default_rng(3)
    y = [rng.normal(0, 1, 500) for _ in range(3)]
    good = [yi * 0.5 for yi in y]  # half the variance explained
    res = diebold_mariano(
        [(g - yi) ** 2 for g, yi in zip(good, y, strict=True)],
        [yi**2 for yi in y],
        lag=3,
        against="persistence",
    )
    assert res.n == 1500 and res.mean_loss_diff < 0 and res.p_value < 1e-6
    worse = diebold_mariano(
        [yi**2 for yi in y], [(g - yi) ** 2 for g, yi in zip(good, y, strict=True)], lag=3
    )
    assert worse.p_value > 0.99


def test_null_labels_are_refused_by_significance_not_only_by_trades() -> None:
    """On null labels some models trade often enough with a positive P&L by luck: a rule of 'P&L > 0 over
    N round trips' alone would let them through; the loss tests do not."""
    lucky = []
    for seed in range(5):
        x, noise, y = _market(seed)
        y_null = np.random.default_rng(100 + seed).permutation(y)
        for name, res in gate_all(_walk_forward(x, noise, y_null), label_overlap_rows=H).items():
            if res.checks["enough_round_trips"] and res.checks["positive_net_pnl"]:
                lucky.append((seed, name))
                assert not res.checks["beats_persistence"] or not res.checks["beats_best_baseline"]
                assert not res.passed
    assert lucky  # the case the significance tests exist for did occur


def test_the_real_walk_forward_refuses_null_labels_a_persistence_only_rule_would_pass() -> None:
    """The real evaluation (features, cheap baselines, the recorded-book backtest) on a synthetic market with
    shuffled or circularly shifted labels: no model passes, although some beat persistence - the old rule
    (a loss gain over persistence) let such models through."""
    from mlmodel.backtest import BacktestConfig
    from mlmodel.baselines import LinearOFI, TreeModel, ZeroReturn
    from mlmodel.dataset import LabelledFrame, label_frame
    from mlmodel.evaluation import EvalConfig, walk_forward_evaluate, walk_forward_splits_by_rows
    from mlmodel.features import FeatureConfig, compute_features
    from mlmodel.ticks import constant_tick_fn
    from tests.mlmodel.synth import synthetic_market

    beat_persistence = []
    for seed in (0, 1):
        book, trades = synthetic_market(6000, seed=seed, signal_strength=3.0)
        cfg = FeatureConfig(levels=5, depths=(1, 3, 5))
        frame = compute_features(book, trades, config=cfg, tick_fn=constant_tick_fn(1.0))
        data = label_frame(frame, horizon_s=5.0)
        nulls = {
            "shuffled": np.random.default_rng(seed).permutation(data.y),
            "shifted": np.roll(data.y, len(data.y) // 3),
        }
        for kind, y in nulls.items():
            _report, outcomes = walk_forward_evaluate(
                LabelledFrame(frame=data.frame, y=y, horizon_s=data.horizon_s),
                book,
                walk_forward_splits_by_rows(frame.ts, n_splits=3),
                {
                    "persistence": lambda c: ZeroReturn(),
                    "linear_ofi": lambda c: LinearOFI(c.feature_names),
                    "gbt": lambda c: TreeModel(max_iter=40),
                },
                config=EvalConfig(window=5, backtest=BacktestConfig(cooldown_ms=1000)),
            )
            overlap = int(np.ceil(5.0 / (np.median(np.diff(frame.ts)) / 1000)))
            for name, res in gate_all(outcomes, label_overlap_rows=overlap).items():
                assert not res.passed, (seed, kind, name, res.reason)
                if res.checks["beats_persistence"]:
                    beat_persistence.append((seed, kind, name))
    assert beat_persistence  # the failure mode of the old rule occurred, and the gate held
