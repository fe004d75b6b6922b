"""Serving: a ``Predictor`` keeps one model loaded and predicts for the latest windows of many markets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mlmodel.features import FeatureFrame
from mlmodel.training import ModelBundle, load_artifact, pick_device


class Predictor:
    """Raw feature windows in, predicted future log-returns out (normalised with the model's own stats)."""

    def __init__(self, bundle: ModelBundle, *, device: str = "cpu", threads: int | None = None) -> None:
        # ``threads`` sets torch's intra-op threads for the whole process: 1 is best on small shared CPUs,
        # where a thread pool waiting on busy cores turns a 0.2 ms p50 into 100 ms tails (bench/bench_ml.py).
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        bundle.model.to(self.device).eval()
        self.bundle = bundle
        self.model = bundle.model
        self.window = bundle.window
        self.feature_names = bundle.feature_names
        self.feature_version = bundle.feature_version
        self.horizon_s = bundle.horizon_s
        # The normalisation as float32 arrays: ``normalize`` uses them, and so does the live kernels' copy
        # of it (``mlmodel.live._store``), so both read the same numbers.
        self.mean = np.ascontiguousarray(bundle.normalizer.mean, dtype=np.float32)
        self.inv_std = np.ascontiguousarray(1.0 / bundle.normalizer.std, dtype=np.float32)
        self.clip = np.float32(bundle.normalizer.clip)
        self.y_scale = float(bundle.y_scale)  # the model's raw outputs times this = predicted log-returns
        # A pooled model serves many markets: each one's normalisation is a row of the tables (its market
        # id = its embedding row); a market's own model has one row.
        self.markets: tuple[str, ...] = tuple(bundle.markets)
        norms = bundle.normalizers if bundle.pooled else (bundle.normalizer,)
        self.mean_table = np.ascontiguousarray(np.stack([n.mean for n in norms]), dtype=np.float32)
        self.inv_std_table = np.ascontiguousarray(np.stack([1.0 / n.std for n in norms]), dtype=np.float32)

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "cpu", threads: int | None = None) -> Predictor:
        return cls(load_artifact(data, device="cpu"), device=device, threads=threads)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def market_ids(self, markets: list[str] | tuple[str, ...]) -> np.ndarray:
        """A pooled model's embedding rows of ``markets`` (ValueError for one it was not trained on)."""
        return np.array([self.bundle.market_id(m) for m in markets], dtype=np.int64)

    def predict_raw(self, windows: np.ndarray, *, market_ids: np.ndarray | None = None) -> np.ndarray:
        """[B, W, F] raw feature windows (or [W, F] for one) -> [B] predicted log-returns (a pooled model:
        with each window's ``market_ids``)."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.shape[1:] != (self.window, self.n_features):
            raise ValueError(
                f"expected windows of shape (B, {self.window}, {self.n_features}), got {x.shape}"
            )
        if self.markets:
            if market_ids is None:
                raise ValueError("a pooled model needs the market of each window")
            z = (x - self.mean_table[market_ids][:, None, :]) * self.inv_std_table[market_ids][:, None, :]
            np.nan_to_num(z, copy=False, nan=0.0)
            np.clip(z, -self.clip, self.clip, out=z)
            return self.predict_normalized(z, market_ids=market_ids)
        return self.predict_normalized(self.normalize(x))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw feature rows [..., F] -> the model's normalised float32 inputs (NaN -> 0, clipped)."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) * self.inv_std
        np.nan_to_num(z, copy=False, nan=0.0)
        np.clip(z, -self.clip, self.clip, out=z)
        return z

    def predict_normalized(self, z: np.ndarray, *, market_ids: np.ndarray | None = None) -> np.ndarray:
        """[B, W, F] normalised windows (see ``normalize``) -> [B] predicted log-returns; one forward pass.

        ``z`` may be a batch-major view of a time-major [W, B, F] buffer (``LiveState.model_inputs``): the
        LSTM's CPU kernel runs time-major, so a batch-major copy would only be transposed back inside it
        (~20 % of a 200-market forward pass)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 3 and z.transpose(1, 0, 2).flags.c_contiguous and not z.flags.c_contiguous:
            x = torch.from_numpy(z.transpose(1, 0, 2)).transpose(0, 1)
        else:
            x = torch.from_numpy(np.ascontiguousarray(z))
        with torch.inference_mode():
            if self.markets:
                if market_ids is None:
                    raise ValueError("a pooled model needs the market of each window")
                ids = torch.from_numpy(np.ascontiguousarray(market_ids, dtype=np.int64)).to(self.device)
                out = self.model(x.to(self.device), ids)
            else:
                out = self.model(x.to(self.device))
        return out.double().cpu().numpy() * self.y_scale

    def predict_markets(self, latest: Mapping[str, np.ndarray]) -> dict[str, float]:
        """One batched forward pass for many markets; each value holds at least W rows of raw features
        (the newest last). Markets with too few rows are left out."""
        names = [
            m
            for m, x in latest.items()
            if x.shape[0] >= self.window and (not self.markets or m in self.markets)
        ]
        if not names:
            return {}
        batch = np.stack([np.asarray(latest[m][-self.window :], dtype=np.float32) for m in names])
        ids = self.market_ids(names) if self.markets else None
        preds = self.predict_raw(batch, market_ids=ids)
        return {m: float(p) for m, p in zip(names, preds, strict=True)}


def latest_window(frame: FeatureFrame, window: int) -> np.ndarray | None:
    """The newest ``window`` feature rows if they are all valid and from one recording segment, else None
    (a gap or a one-sided book means there is nothing honest to predict from)."""
    if len(frame) < window:
        return None
    tail = slice(len(frame) - window, len(frame))
    if not frame.valid[tail].all() or frame.segment[tail][0] != frame.segment[-1]:
        return None
    return frame.X[tail]
