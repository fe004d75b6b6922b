"""Baselines scored on the same splits as the LSTM: zero return (price persistence), a linear model on OFI
and depth imbalance, and a gradient-boosted tree on the newest feature row."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from mlmodel.dataset import WindowSet


class ReturnModel(Protocol):
    """Anything walk-forward evaluation can fit on (train, validation) and ask for predicted returns."""

    name: str

    def fit(self, train: WindowSet, val: WindowSet) -> None: ...

    def predict(self, ws: WindowSet) -> np.ndarray: ...


class ZeroReturn:
    """Persistence: the price stays where it is, i.e. a predicted return of zero. The bar to beat."""

    name = "persistence"

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        return None

    def predict(self, ws: WindowSet) -> np.ndarray:
        return np.zeros(len(ws))


class LinearOFI:
    """Ridge regression of the return on the order-flow-imbalance and depth-imbalance columns."""

    name = "linear_ofi"

    def __init__(self, feature_names: tuple[str, ...], *, alpha: float = 1.0) -> None:
        self.cols = [i for i, n in enumerate(feature_names) if n.startswith(("ofi_", "imb_"))]
        if not self.cols:
            raise ValueError("no ofi_/imb_ features to regress on")
        self.model = Ridge(alpha=alpha)

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        self.model.fit(train.last_rows()[:, self.cols], train.y.astype(np.float64))

    def predict(self, ws: WindowSet) -> np.ndarray:
        if len(ws) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict(ws.last_rows()[:, self.cols]), dtype=np.float64)


class TreeModel:
    """Histogram gradient boosting on all features of the newest row; the number of trees is picked on
    the validation period (never on the test period)."""

    name = "gbt"

    def __init__(
        self, *, seed: int = 0, max_iter: int = 200, max_train_rows: int = 200_000, threads: int | None = 1
    ) -> None:
        # One OpenMP thread by default: on small, busy machines the threaded grower spends its time spinning.
        self.threads = threads
        self.seed = seed
        self.max_iter = max_iter
        self.max_train_rows = max_train_rows
        self.model: HistGradientBoostingRegressor | None = None
        self.best_iter = 0

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        rng = np.random.default_rng(self.seed)
        n = len(train)
        rows = (
            np.sort(rng.choice(n, self.max_train_rows, replace=False))
            if n > self.max_train_rows
            else slice(None)
        )
        X, y = train.last_rows()[rows], train.y[rows].astype(np.float64)
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=50,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            model.fit(X, y)
        if len(val):
            Xv, yv = val.last_rows(), val.y.astype(np.float64)
            with threadpool_limits(limits=self.threads, user_api="openmp"):
                losses = [float(np.mean((p - yv) ** 2)) for p in model.staged_predict(Xv)]
            self.best_iter = int(np.argmin(losses)) + 1
        else:
            self.best_iter = self.max_iter
        self.model = model

    def predict(self, ws: WindowSet) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit first")
        if len(ws) == 0:
            return np.zeros(0)
        out = np.zeros(len(ws))
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            for i, p in enumerate(self.model.staged_predict(ws.last_rows()), start=1):
                if i == self.best_iter:
                    out = np.asarray(p, dtype=np.float64)
                    break
        return out
