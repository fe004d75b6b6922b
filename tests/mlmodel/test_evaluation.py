"""Walk-forward splits, the test period used once, normalisation from the training window only, metrics and
the promotion rules."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from market.dayfiles import BookArrays
from mlmodel.baselines import LinearOFI, ReturnModel, ZeroReturn
from mlmodel.dataset import LabelledFrame, Normalizer, WindowSet, label_frame
from mlmodel.evaluation import (
    EvalConfig,
    ModelFactory,
    Split,
    SplitContext,
    TestPeriodGuard,
    TestPeriodReused,
    prediction_metrics,
    walk_forward_evaluate,
    walk_forward_splits,
    walk_forward_splits_by_rows,
)
from mlmodel.features import compute_features
from mlmodel.ticks import constant_tick_fn
from tests.mlmodel.synth import synthetic_market


def _data(n: int = 3000, seed: int = 0) -> tuple[LabelledFrame, BookArrays]:
    book, trades = synthetic_market(n, seed=seed)
    frame = compute_features(book, trades, tick_fn=constant_tick_fn(1.0))
    return label_frame(frame, horizon_s=5.0), book


def test_time_splits_roll_without_overlap() -> None:
    splits = walk_forward_splits(0, 100_000, train_s=30, val_s=10, test_s=10, embargo_s=2)
    assert len(splits) == 5
    for s in splits:
        assert s.train[0] < s.train[1] <= s.val[0] < s.val[1] <= s.test[0] < s.test[1] <= 100_000
        assert s.val[0] - s.train[1] == 2000 and s.test[0] - s.val[1] == 2000
    for a, b in zip(splits, splits[1:], strict=False):
        assert a.test[1] <= b.test[0]  # test periods never overlap
        assert b.train[0] - a.train[0] == 10_000


def test_row_splits_cover_the_data_end_with_disjoint_tests() -> None:
    ts = np.cumsum(np.r_[0, np.full(999, 200)]).astype(np.int64)
    ts[500:] += 3_600_000  # a recording gap does not distort the split sizes
    splits = walk_forward_splits_by_rows(ts, n_splits=3)
    assert splits[-1].test[1] > ts[-1]
    for s in splits:
        assert s.train[1] <= s.val[0] and s.val[1] <= s.test[0]
    tests = [s.test for s in splits]
    assert all(a[1] <= b[0] for a, b in zip(tests, tests[1:], strict=False))


@dataclass
class _Seen:
    """What the spy model was given in one split."""

    split: Split
    normalizer: Normalizer
    train_ts: np.ndarray
    val_ts: np.ndarray
    predicted: list[np.ndarray] = field(default_factory=list)


class _Spy:
    """Records the windows a model is fitted and scored on."""

    name = "spy"

    def __init__(self, ctx: SplitContext, log: list[_Seen]) -> None:
        self.ctx, self.log = ctx, log

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        self.log.append(_Seen(self.ctx.split, self.ctx.normalizer, train.ts.copy(), val.ts.copy()))

    def predict(self, ws: WindowSet) -> np.ndarray:
        self.log[-1].predicted.append(ws.ts.copy())
        return np.zeros(len(ws))


def _factories(log: list[_Seen]) -> dict[str, ModelFactory]:
    return {"persistence": lambda ctx: ZeroReturn(), "spy": lambda ctx: _Spy(ctx, log)}


def test_walk_forward_trains_on_the_past_and_opens_each_test_period_once() -> None:
    lf, book = _data()
    splits = walk_forward_splits_by_rows(lf.frame.ts, n_splits=3)
    log: list[_Seen] = []
    guard = TestPeriodGuard()
    report, _ = walk_forward_evaluate(
        lf, book, splits, _factories(log), config=EvalConfig(window=10), guard=guard
    )
    assert sorted(guard.opened) == sorted((s.index, m) for s in splits for m in ("persistence", "spy"))
    H = int(lf.horizon_s * 1000)
    for seen, split in zip(log, splits, strict=True):
        tr, va = seen.train_ts, seen.val_ts
        assert tr.max() + H < split.train[1] <= split.val[0]  # training labels end before validation starts
        assert va.min() >= split.val[0] and va.max() + H < split.val[1]
        _, test_ts = seen.predicted  # validation once, then the test once
        assert test_ts.min() >= split.test[0] and test_ts.max() < split.test[1]
        assert tr.max() < test_ts.min()
    with pytest.raises(TestPeriodReused):
        guard.open(splits[0].index, "spy")
    assert set(report["summary"]) == {"persistence", "spy"}


def test_normalisation_statistics_come_from_the_training_window_only() -> None:
    lf, book = _data()
    splits = walk_forward_splits_by_rows(lf.frame.ts, n_splits=2)
    log: list[_Seen] = []
    walk_forward_evaluate(lf, book, splits, _factories(log), config=EvalConfig(window=10))
    f = lf.frame
    split = splits[0]
    rows = f.valid & (f.ts >= split.train[0]) & (f.ts < split.train[1])
    expected = Normalizer.fit(f.X, rows=rows)
    np.testing.assert_allclose(log[0].normalizer.mean, expected.mean)
    # Blow up every value after the training window: the statistics must not move.
    X2 = f.X.copy()
    X2[f.ts >= split.train[1]] *= 1000.0
    lf2 = LabelledFrame(frame=replace(f, X=X2), y=lf.y, horizon_s=lf.horizon_s)
    log2: list[_Seen] = []
    walk_forward_evaluate(lf2, book, splits[:1], _factories(log2), config=EvalConfig(window=10))
    np.testing.assert_allclose(log2[0].normalizer.mean, expected.mean)
    np.testing.assert_allclose(log2[0].normalizer.std, expected.std)


def test_prediction_metrics_by_hand() -> None:
    y = np.array([0.002, -0.002, 0.0005, -0.003])
    p = np.array([0.0015, 0.001, -0.002, -0.0011])
    m = prediction_metrics(y, p, move_threshold=0.001)
    assert m["mse"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["dir_acc"] == pytest.approx(2 / 3)  # moves beyond the fee: rows 0, 1, 3 -> right, wrong, right
    assert m["dir_acc_calls"] == pytest.approx(2 / 3)  # calls beyond the fee: rows 0, 2, 3
    assert m["moves"] == 3 and m["calls"] == 3
    z = prediction_metrics(y, np.zeros(4), move_threshold=0.001)
    assert z["corr"] == 0.0 and z["dir_acc"] == 0.0 and z["f1_moves"] == 0.0


def test_linear_baseline_finds_the_ofi_signal() -> None:
    lf, book = _data(6000, seed=2)
    splits = walk_forward_splits_by_rows(lf.frame.ts, n_splits=2)
    factories: dict[str, ModelFactory] = {
        "persistence": lambda ctx: ZeroReturn(),
        "linear_ofi": lambda ctx: LinearOFI(ctx.feature_names),
    }
    report, _ = walk_forward_evaluate(lf, book, splits, factories, config=EvalConfig(window=5))
    s = report["summary"]
    assert s["linear_ofi"]["test"]["mse"] < s["persistence"]["test"]["mse"]
    assert s["linear_ofi"]["beats_persistence_on_validation"]
    assert not s["persistence"]["beats_persistence_on_validation"]


def test_model_protocol_is_satisfied_by_baselines() -> None:
    models: list[ReturnModel] = [ZeroReturn(), LinearOFI(("ofi_1s", "x"))]
    assert [m.name for m in models] == ["persistence", "linear_ofi"]


def test_eval_windows_are_capped_evenly_over_each_period_and_untouched_below_the_cap() -> None:
    """ML_MAX_EVAL_WINDOWS: a market with many days is judged on at most that many validation and test
    windows per split, every k-th one (so the whole period is still covered); below the cap nothing moves."""
    lf, book = _data()
    splits = walk_forward_splits_by_rows(lf.frame.ts, n_splits=2)
    full_log: list[_Seen] = []
    full, _ = walk_forward_evaluate(lf, book, splits, _factories(full_log), config=EvalConfig(window=10))
    same_log: list[_Seen] = []
    same, _ = walk_forward_evaluate(
        lf, book, splits, _factories(same_log), config=EvalConfig(window=10, max_eval_windows=10**6)
    )
    assert [s["samples"] for s in same["splits"]] == [s["samples"] for s in full["splits"]]
    cap = 100
    log: list[_Seen] = []
    capped, _ = walk_forward_evaluate(
        lf, book, splits, _factories(log), config=EvalConfig(window=10, max_eval_windows=cap)
    )
    for s_full, s_cap, seen, seen_full in zip(full["splits"], capped["splits"], log, full_log, strict=True):
        n = s_full["samples"]["test_decisions"]
        k = -(-n // cap)
        assert s_cap["samples"]["test_decisions"] == len(range(0, n, k)) <= cap
        assert s_cap["samples"]["test_decision_stride"] == k > 1
        assert s_cap["samples"]["val"] <= cap < s_full["samples"]["val"]
        np.testing.assert_array_equal(seen.predicted[1], seen_full.predicted[1][::k])  # every k-th decision
        assert seen.val_ts.min() - seen_full.val_ts.min() < 60_000  # validation still spans its period
        assert seen_full.val_ts.max() - seen.val_ts.max() < 60_000
        np.testing.assert_array_equal(seen.train_ts, seen_full.train_ts)  # training windows untouched
    assert capped["config"]["max_eval_windows"] == cap
