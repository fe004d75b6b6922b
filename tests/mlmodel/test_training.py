"""LSTM training: reproducible with a seed, early stopping restores the best validation weights, artifacts
round-trip, and the predictor serves exactly what was trained."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from mlmodel.dataset import Normalizer, WindowSet
from mlmodel.features import FeatureConfig
from mlmodel.inference import Predictor
from mlmodel.training import (
    ModelBundle,
    ProgressFn,
    TrainConfig,
    TrainingCancelled,
    load_artifact,
    save_artifact,
    train_lstm,
)

torch.set_num_threads(1)


def _windowsets(
    seed: int = 0, n: int = 1500, f: int = 4, w: int = 8
) -> tuple[WindowSet, WindowSet, Normalizer]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (0.5 * X[:, 0] + 0.3 * np.roll(X[:, 1], 1) + 0.5 * rng.normal(size=n)).astype(np.float32) * 1e-3
    ends = np.arange(w - 1, n)
    tr, va = ends[: int(0.7 * len(ends))], ends[int(0.7 * len(ends)) :]
    norm = Normalizer.fit(X)
    return (
        WindowSet(X, tr, y[tr], tr.astype(np.int64), w),
        WindowSet(X, va, y[va], va.astype(np.int64), w),
        norm,
    )


def _train(
    cfg: TrainConfig, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None
) -> ModelBundle:
    tr, va, norm = _windowsets()
    names = tuple(f"f{i}" for i in range(tr.n_features))
    return train_lstm(
        tr,
        va,
        config=cfg,
        normalizer=norm,
        feature_config=FeatureConfig(),
        feature_names=names,
        horizon_s=5.0,
        progress=progress,
        should_stop=should_stop,
    )


SMALL = TrainConfig(window=8, hidden=8, max_epochs=3, patience=3, batch_size=64, seed=7, device="cpu")


def test_same_seed_same_model_other_seed_other_model() -> None:
    a, b, c = _train(SMALL), _train(SMALL), _train(TrainConfig(**{**SMALL.to_dict(), "seed": 8}))
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)
    assert a.history == [{**h, "seconds": a.history[i]["seconds"]} for i, h in enumerate(b.history)]
    assert not torch.equal(a.model.state_dict()["head.weight"], c.model.state_dict()["head.weight"])


def test_early_stopping_restores_the_best_validation_weights() -> None:
    # A large learning rate makes validation loss bounce; whatever the path, the returned weights must be
    # those of the epoch with the lowest validation loss, and training stops `patience` epochs after it.
    cfg = TrainConfig(
        window=8,
        hidden=16,
        max_epochs=25,
        patience=2,
        batch_size=32,
        lr=0.05,
        seed=1,
        device="cpu",
        loss="mse",
    )
    seen: list[tuple[int, float, float, float]] = []
    bundle = _train(cfg, progress=lambda *a: seen.append(a))
    val_losses = [h["val_loss"] for h in bundle.history]
    best = int(np.argmin(val_losses)) + 1
    assert bundle.best_epoch == best
    assert len(val_losses) < cfg.max_epochs, "expected early stopping to trigger"
    assert len(val_losses) == best + cfg.patience
    _, va, _ = _windowsets()
    pred = bundle.predict_windowset(va)
    restored = float(np.mean((pred / bundle.y_scale - va.y / bundle.y_scale) ** 2))
    assert restored == pytest.approx(min(val_losses), rel=1e-4)
    assert [s[0] for s in seen] == list(range(1, len(val_losses) + 1))
    assert seen[-1][3] == 0.0 and all(s[3] >= 0 for s in seen)  # ETA reported, zero at the end


def test_training_can_be_cancelled() -> None:
    with pytest.raises(TrainingCancelled):
        _train(SMALL, should_stop=lambda: True)


def test_artifact_round_trip_and_predictor_match() -> None:
    bundle = _train(SMALL)
    data = save_artifact(bundle)
    loaded = load_artifact(data)
    assert loaded.feature_version == bundle.feature_version
    assert loaded.train_config == bundle.train_config
    np.testing.assert_array_equal(loaded.normalizer.mean, bundle.normalizer.mean)
    _, va, _ = _windowsets()
    np.testing.assert_allclose(loaded.predict_windowset(va), bundle.predict_windowset(va), rtol=1e-6)
    # The predictor takes raw windows and normalises them with the stored statistics.
    raw = va.windows()[:16] * bundle.normalizer.std.astype(np.float32) + bundle.normalizer.mean.astype(
        np.float32
    )
    pred = Predictor.from_bytes(data).predict_raw(raw)
    np.testing.assert_allclose(
        pred,
        bundle.predict_windowset(WindowSet(va.X, va.ends[:16], va.y[:16], va.ts[:16], 8)),
        rtol=1e-4,
        atol=1e-9,
    )
    batch = Predictor(loaded).predict_markets({"KRW-A": raw[0], "KRW-B": raw[1], "KRW-C": raw[2][:3]})
    assert set(batch) == {"KRW-A", "KRW-B"}


def test_bad_artifacts_are_refused() -> None:
    import io

    buf = io.BytesIO()
    torch.save({"format": 999}, buf)
    with pytest.raises(ValueError, match="format"):
        load_artifact(buf.getvalue())


def test_empty_splits_are_refused() -> None:
    tr, va, norm = _windowsets()
    empty = WindowSet(tr.X, tr.ends[:0], tr.y[:0], tr.ts[:0], 8)
    with pytest.raises(ValueError, match="validation"):
        train_lstm(
            tr,
            empty,
            config=SMALL,
            normalizer=norm,
            feature_config=FeatureConfig(),
            feature_names=("a", "b", "c", "d"),
            horizon_s=1.0,
        )
