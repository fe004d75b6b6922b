"""Deterministic LSTM training: early stopping on a validation period, progress callbacks, artifacts."""

from __future__ import annotations

import copy
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mlmodel.dataset import Normalizer, WindowSet
from mlmodel.evaluation import SplitContext
from mlmodel.features import FEATURE_VERSION, FeatureConfig
from mlmodel.nets import LSTMConfig, LSTMRegressor, PooledLSTMConfig, PooledLSTMRegressor

ARTIFACT_FORMAT = 1
ProgressFn = Callable[[int, float, float, float], None]  # (epoch, train_loss, val_loss, eta_seconds)


class TrainingCancelled(Exception):
    """Raised when ``should_stop`` asks training to end (an operator cancelled it)."""


@dataclass(frozen=True)
class TrainConfig:
    window: int = 50
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 5
    seed: int = 0
    device: str = "auto"  # "auto" = CUDA when available, else CPU
    max_samples_per_epoch: int | None = 200_000
    loss: str = "huber"  # "mse" or "huber" (on returns scaled to unit std; robust to spikes)
    grad_clip: float = 1.0
    embed: int = 8  # a pooled model's market embedding size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ModelBundle:
    """A trained model with everything needed to serve it exactly as it was evaluated."""

    model: LSTMRegressor | PooledLSTMRegressor
    train_config: TrainConfig
    normalizer: Normalizer
    feature_config: FeatureConfig
    feature_names: tuple[str, ...]
    horizon_s: float
    y_scale: float
    feature_version: str = FEATURE_VERSION
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # A pooled model: the markets in embedding order and each one's normalisation (``normalizer`` is unused).
    markets: tuple[str, ...] = ()
    normalizers: tuple[Normalizer, ...] = ()

    @property
    def pooled(self) -> bool:
        return bool(self.markets)

    def market_id(self, market: str) -> int:
        """A pooled model's embedding row of ``market`` (ValueError when it was not trained on it)."""
        try:
            return self.markets.index(market)
        except ValueError:
            raise ValueError(f"the pooled model was not trained on {market}") from None

    def normalizer_for(self, market: str | None) -> Normalizer:
        """The normalisation of ``market``'s inputs: its own in a pooled model, else the model's one."""
        if not self.pooled:
            return self.normalizer
        if market is None:
            raise ValueError("a pooled model needs the market of its inputs")
        return self.normalizers[self.market_id(market)]

    @property
    def window(self) -> int:
        return self.train_config.window

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_normalised(
        self, windows: np.ndarray, *, market: str | None = None, batch_size: int = 8192
    ) -> np.ndarray:
        """Predicted log-returns for [B, W, F] windows that are already normalised (of ``market``, for a
        pooled model)."""
        self.model.eval()
        out = np.empty(windows.shape[0], dtype=np.float64)
        ids = None
        if self.pooled:
            if market is None:
                raise ValueError("a pooled model needs the market of its inputs")
            ids = np.full(windows.shape[0], self.market_id(market), dtype=np.int64)
        with torch.inference_mode():
            for s in range(0, windows.shape[0], batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(windows[s : s + batch_size], dtype=np.float32))
                mb = None if ids is None else ids[s : s + batch_size]
                out[s : s + batch_size] = _forward(self.model, xb, mb, self.device) * self.y_scale
        return out

    def predict_windowset(self, ws: WindowSet, *, batch_size: int = 8192) -> np.ndarray:
        self.model.eval()
        out = np.empty(len(ws), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(ws), batch_size):
                idx = np.arange(s, min(s + batch_size, len(ws)))
                out[idx] = _ws_forward(self.model, ws, idx, self.device).double().cpu().numpy() * self.y_scale
        return out


def _forward(
    model: torch.nn.Module, xb: torch.Tensor, market: np.ndarray | None, device: torch.device
) -> Any:
    """One forward pass as float64 numpy (``market``: the samples' embedding rows for a pooled model)."""
    if market is None:
        return model(xb.to(device)).double().cpu().numpy()
    return model(xb.to(device), torch.from_numpy(market).to(device)).double().cpu().numpy()


def _ws_forward(model: torch.nn.Module, ws: WindowSet, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """The model's outputs for samples ``idx`` of ``ws`` (with their market ids when it is pooled)."""
    xb = torch.from_numpy(ws.batch(idx)).to(device)
    if isinstance(model, PooledLSTMRegressor):
        if ws.market is None:
            raise ValueError("a pooled model needs each sample's market")
        out: torch.Tensor = model(xb, torch.from_numpy(ws.market[idx]).to(device))
        return out
    out = model(xb)
    return out


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and ask for deterministic kernels, so a seed reproduces a model."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def _loss_fn(name: str) -> torch.nn.Module:
    if name == "mse":
        return torch.nn.MSELoss()
    if name == "huber":
        return torch.nn.HuberLoss(delta=1.0)
    raise ValueError(f"unknown loss {name!r}")


def _eval_loss(
    model: LSTMRegressor | PooledLSTMRegressor,
    ws: WindowSet,
    y_scale: float,
    loss: torch.nn.Module,
    device: torch.device,
    batch_size: int,
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(ws), batch_size):
            idx = np.arange(s, min(s + batch_size, len(ws)))
            yb = torch.from_numpy(ws.y[idx] / y_scale).to(device)
            total += float(loss(_ws_forward(model, ws, idx, device), yb)) * len(idx)
            count += len(idx)
    return total / max(count, 1)


def train_lstm(
    train: WindowSet,
    val: WindowSet,
    *,
    config: TrainConfig,
    normalizer: Normalizer,
    feature_config: FeatureConfig,
    feature_names: tuple[str, ...],
    horizon_s: float,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    markets: tuple[str, ...] = (),
    normalizers: tuple[Normalizer, ...] = (),
) -> ModelBundle:
    """Train on ``train``, early-stop on ``val`` (patience epochs without improvement) and return the model
    with the weights of its best validation epoch. The test period is never seen here. With ``markets``
    the sets are pooled (``dataset.pooled_windowset``: samples tagged with their market id) and the model is
    a :class:`PooledLSTMRegressor` with one embedding row per market (``normalizers``: each one's)."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"need training and validation samples (got {len(train)} and {len(val)})")
    if train.window != config.window or val.window != config.window:
        raise ValueError("window sets were built with a different window length than the config")
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    device = pick_device(config.device)
    model: LSTMRegressor | PooledLSTMRegressor
    if markets:
        model = PooledLSTMRegressor(
            PooledLSTMConfig(
                n_features=train.n_features,
                n_markets=len(markets),
                embed=config.embed,
                hidden=config.hidden,
                layers=config.layers,
                dropout=config.dropout,
            )
        ).to(device)
    else:
        model = LSTMRegressor(
            LSTMConfig(
                n_features=train.n_features,
                hidden=config.hidden,
                layers=config.layers,
                dropout=config.dropout,
            )
        ).to(device)
    y_scale = float(np.std(train.y))
    if not math.isfinite(y_scale) or y_scale <= 0:
        y_scale = 1e-4
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss = _loss_fn(config.loss)
    best_val, best_epoch = math.inf, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    epoch_times: list[float] = []
    stale = 0
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        n = len(train)
        order = rng.permutation(n)
        if config.max_samples_per_epoch is not None and n > config.max_samples_per_epoch:
            order = order[: config.max_samples_per_epoch]
        total, count = 0.0, 0
        for s in range(0, order.shape[0], config.batch_size):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"cancelled in epoch {epoch}")
            idx = np.sort(order[s : s + config.batch_size])
            yb = torch.from_numpy(train.y[idx] / y_scale).to(device)
            opt.zero_grad(set_to_none=True)
            batch_loss = loss(_ws_forward(model, train, idx, device), yb)
            batch_loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += float(batch_loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / max(count, 1)
        val_loss = _eval_loss(model, val, y_scale, loss, device, max(config.batch_size, 4096))
        epoch_times.append(time.perf_counter() - t0)
        history.append(
            {
                "epoch": float(epoch),
                "train_loss": train_loss,
                "val_loss": val_loss,
                "seconds": epoch_times[-1],
            }
        )
        if val_loss < best_val - 1e-12:
            best_val, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        remaining = config.max_epochs - epoch if stale < config.patience else 0
        if progress is not None:
            progress(epoch, train_loss, val_loss, float(np.mean(epoch_times)) * remaining)
        if stale >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return ModelBundle(
        model=model,
        train_config=config,
        normalizer=normalizer,
        feature_config=feature_config,
        feature_names=tuple(feature_names),
        horizon_s=float(horizon_s),
        y_scale=y_scale,
        history=history,
        best_epoch=best_epoch,
        meta={"train_samples": len(train), "val_samples": len(val), "device": str(device)},
        markets=tuple(markets),
        normalizers=tuple(normalizers),
    )


def save_artifact(bundle: ModelBundle) -> bytes:
    """Serialise a bundle (weights, hyper-parameters, normalisation, feature config and version) to bytes."""
    state = {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()}
    payload = {
        "format": ARTIFACT_FORMAT,
        "state_dict": state,
        "net": bundle.model.config.to_dict(),
        "train": bundle.train_config.to_dict(),
        "normalizer": bundle.normalizer.to_dict(),
        "feature_config": bundle.feature_config.to_dict(),
        "feature_names": list(bundle.feature_names),
        "feature_version": bundle.feature_version,
        "horizon_s": bundle.horizon_s,
        "y_scale": bundle.y_scale,
        "history": bundle.history,
        "best_epoch": bundle.best_epoch,
        "meta": bundle.meta,
    }
    if bundle.pooled:
        payload["pooled"] = {
            "markets": list(bundle.markets),
            "normalizers": [n.to_dict() for n in bundle.normalizers],
        }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def load_artifact(data: bytes, *, device: str = "cpu") -> ModelBundle:
    """Inverse of :func:`save_artifact` (weights-only unpickling: an artifact cannot run code)."""
    payload = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    if payload.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"unsupported model artifact format {payload.get('format')!r}")
    pooled = payload.get("pooled") or {}
    model: LSTMRegressor | PooledLSTMRegressor
    if pooled:
        model = PooledLSTMRegressor(PooledLSTMConfig(**payload["net"]))
    else:
        model = LSTMRegressor(LSTMConfig(**payload["net"]))
    model.load_state_dict(payload["state_dict"])
    model.to(pick_device(device)).eval()
    return ModelBundle(
        model=model,
        train_config=TrainConfig.from_dict(payload["train"]),
        normalizer=Normalizer.from_dict(payload["normalizer"]),
        feature_config=FeatureConfig.from_dict(payload["feature_config"]),
        feature_names=tuple(payload["feature_names"]),
        horizon_s=float(payload["horizon_s"]),
        y_scale=float(payload["y_scale"]),
        feature_version=str(payload["feature_version"]),
        history=list(payload["history"]),
        best_epoch=int(payload["best_epoch"]),
        meta=dict(payload["meta"]),
        markets=tuple(pooled.get("markets", ())),
        normalizers=tuple(Normalizer.from_dict(n) for n in pooled.get("normalizers", ())),
    )


class LSTMModel:
    """The LSTM as a walk-forward model: trained per split with that split's normalisation statistics."""

    name = "lstm"

    def __init__(
        self,
        ctx: SplitContext,
        config: TrainConfig,
        *,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if ctx.window != config.window:
            config = TrainConfig.from_dict({**config.to_dict(), "window": ctx.window})
        self.ctx = ctx
        self.config = config
        self.progress = progress
        self.should_stop = should_stop
        self.bundle: ModelBundle | None = None

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        self.bundle = train_lstm(
            train,
            val,
            config=self.config,
            normalizer=self.ctx.normalizer,
            feature_config=self.ctx.feature_config,
            feature_names=self.ctx.feature_names,
            horizon_s=self.ctx.horizon_s,
            progress=self.progress,
            should_stop=self.should_stop,
        )
        self.bundle.meta["split"] = self.ctx.split.to_dict()

    def predict(self, ws: WindowSet) -> np.ndarray:
        if self.bundle is None:
            raise RuntimeError("fit first")
        return self.bundle.predict_windowset(ws)


def lstm_factory(
    config: TrainConfig, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None
) -> Callable[[SplitContext], LSTMModel]:
    def make(ctx: SplitContext) -> LSTMModel:
        return LSTMModel(ctx, config, progress=progress, should_stop=should_stop)

    return make


class FrozenModel:
    """An already trained bundle (e.g. the active model) scored on the same splits without refitting.

    Windows arrive normalised with the split's statistics; they are mapped back to raw features and
    normalised with the bundle's own, as serving would (a pooled bundle: ``market``'s own, with its
    embedding)."""

    name = "incumbent"

    def __init__(self, ctx: SplitContext, bundle: ModelBundle, *, market: str | None = None) -> None:
        if tuple(bundle.feature_names) != tuple(ctx.feature_names):
            raise ValueError("the frozen model was trained on different features")
        self.ctx = ctx
        self.bundle = bundle
        self.market = market
        self.normalizer = bundle.normalizer_for(market)

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        return None

    def predict(self, ws: WindowSet) -> np.ndarray:
        if len(ws) == 0:
            return np.zeros(0)
        W = self.bundle.window
        if ws.window < W:
            raise ValueError(f"the frozen model needs windows of {W} rows")
        out = np.empty(len(ws))
        for s in range(0, len(ws), 8192):
            idx = np.arange(s, min(s + 8192, len(ws)))
            z = ws.batch(idx)[:, -W:, :].astype(np.float64)
            raw = z * self.ctx.normalizer.std + self.ctx.normalizer.mean
            out[idx] = self.bundle.predict_normalised(self.normalizer.transform(raw), market=self.market)
        return out


class PooledSplitModel:
    """One market's view of a split's pooled LSTM (trained on every market's training period of that split,
    ``mlmodel.services.pooled``) as a walk-forward model: nothing to fit, predictions with the market's
    embedding. With ``raw_X`` (the market's un-normalised feature rows, which the window sets index) its
    windows are normalised with the model's own statistics of that market, as serving does; without it they
    arrive normalised with the market's split statistics (the same ones when the market was kept whole)."""

    name = "lstm"

    def __init__(self, bundle: ModelBundle, market: str, raw_X: np.ndarray | None = None) -> None:
        self.bundle = bundle
        self.market = market
        self.raw_X = raw_X

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        return None

    def predict(self, ws: WindowSet) -> np.ndarray:
        if len(ws) == 0:
            return np.zeros(0)
        raw = self.raw_X
        if raw is not None and raw.shape[0] != ws.X.shape[0]:
            raise ValueError("raw_X must hold the rows the window set indexes")
        norm = self.bundle.normalizer_for(self.market)
        out = np.empty(len(ws))
        for s in range(0, len(ws), 8192):
            idx = np.arange(s, min(s + 8192, len(ws)))
            if raw is None:
                windows = ws.batch(idx)
            else:
                rows = ws.ends[idx][:, None] - np.arange(ws.window - 1, -1, -1)[None, :]
                windows = norm.transform(raw[rows].reshape(-1, raw.shape[1])).reshape(len(idx), ws.window, -1)
            out[idx] = self.bundle.predict_normalised(windows, market=self.market)
        return out
