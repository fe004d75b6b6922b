"""Live serving's incremental, stacked featurisation (only the new snapshots' rows, all markets in one pass,
a per-market buffer of normalised rows) predicts exactly what the per-market path did: featurise each
market's bounded tail, take the newest window, batch-predict. Random data with different level counts, a
recording gap, one-sided books and trades that arrive one batch late."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from market.dayfiles import BookArrays, TradeArrays
from mlmodel.dataset import Normalizer
from mlmodel.features import FeatureConfig, compute_features, feature_names
from mlmodel.inference import Predictor, latest_window
from mlmodel.nets import LSTMConfig, LSTMRegressor
from mlmodel.serving import MarketWindow, featurise_markets
from mlmodel.training import ModelBundle, TrainConfig
from tests.mlmodel.synth import synthetic_market

KEEP_MS = 150_000


def _predictor(window: int = 20, seed: int = 0) -> Predictor:
    cfg = FeatureConfig()
    names = feature_names(cfg)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = LSTMRegressor(LSTMConfig(n_features=len(names), hidden=8))
    bundle = ModelBundle(
        model=net,
        train_config=TrainConfig(window=window, hidden=8),
        normalizer=Normalizer(mean=rng.normal(size=len(names)), std=rng.uniform(0.5, 3.0, size=len(names))),
        feature_config=cfg,
        feature_names=names,
        horizon_s=10.0,
        y_scale=1e-3,
    )
    return Predictor(bundle, device="cpu")


def _batch(book: BookArrays, trades: TradeArrays, lo: int, hi: int, t_lo: int, t_hi: int) -> dict[str, Any]:
    return {
        "ts": book.ts[lo:hi].tolist(),
        "ask_px": book.ask_px[lo:hi].tolist(),
        "ask_sz": book.ask_sz[lo:hi].tolist(),
        "bid_px": book.bid_px[lo:hi].tolist(),
        "bid_sz": book.bid_sz[lo:hi].tolist(),
        "trades": {
            "ts": trades.ts[t_lo:t_hi].tolist(),
            "price": trades.price[t_lo:t_hi].tolist(),
            "volume": trades.volume[t_lo:t_hi].tolist(),
            "side": trades.side[t_lo:t_hi].tolist(),
        },
    }


def _markets() -> list[tuple[BookArrays, TradeArrays]]:
    out = []
    for k, (levels, gap_at) in enumerate([(30, None), (15, 900), (10, None), (5, None)]):
        book, trades = synthetic_market(
            1300, seed=10 + k, levels=levels, gap_at=gap_at, price=500.0 * (k + 1)
        )
        if k == 2:  # a one-sided stretch: no prediction from windows that contain it, on either path
            book.bid_px[1000:1004, 0] = 0.0
        out.append((book, trades))
    return out


def _legacy(w: MarketWindow, pred: Predictor) -> np.ndarray | None:
    cfg = pred.bundle.feature_config
    since = w.tail_since(pred.window, cfg.lookback_ms)
    if since is None:
        return None
    frame = compute_features(w.book(since), w.trades(since), config=cfg)
    return latest_window(frame, pred.window)


def test_incremental_stacked_serving_equals_the_per_market_path() -> None:
    pred = _predictor()
    key = (1, "sha")
    series = _markets()
    old = [MarketWindow() for _ in series]
    new = [MarketWindow() for _ in series]
    rng = np.random.default_rng(3)
    t_done = [0] * len(series)
    lo = 0
    compared = skipped = 0
    while lo < 1300:
        hi = min(1300, lo + int(rng.integers(1, 12)))
        for m, (book, trades) in enumerate(series):
            t_hi = int(np.searchsorted(trades.ts, book.ts[hi - 1], side="right"))
            if m == 3 and hi < 1300:  # market 3's trades arrive one batch late (older than its newest rows)
                t_hi = int(np.searchsorted(trades.ts, book.ts[max(lo - 1, 0)], side="right"))
            t_hi = max(t_hi, t_done[m])
            data = _batch(book, trades, lo, hi, t_done[m], t_hi)
            t_done[m] = t_hi
            old[m].append(data, KEEP_MS)
            new[m].append(data, KEEP_MS)
        lo = hi
        latest = {f"M{m}": x for m, w in enumerate(old) if (x := _legacy(w, pred)) is not None}
        expected = pred.predict_markets(latest)
        ready = [w for w in new if w.ts.size >= pred.window]
        featurise_markets(ready, pred, key)
        names, inputs = [], []
        for m, w in enumerate(new):
            z = w.model_input(pred.window, pred.bundle.feature_config.max_gap_ms)
            if z is not None:
                names.append(f"M{m}")
                inputs.append(z)
                assert np.array_equal(w.f_ts, w.ts[-pred.window :])
        got = dict(zip(names, pred.predict_normalized(np.stack(inputs)), strict=True)) if names else {}
        assert set(got) == set(expected), (lo, set(got) ^ set(expected))
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-10)
        compared += len(expected)
        skipped += len(series) - len(expected)
    assert compared > 400 and skipped > 0  # both predictions and honest refusals were exercised


def test_a_new_model_version_refeaturises_the_whole_window() -> None:
    first, second = _predictor(seed=0), _predictor(seed=1)
    book, trades = synthetic_market(800, seed=5, levels=10)
    w = MarketWindow()
    t_hi = int(np.searchsorted(trades.ts, book.ts[799], side="right"))
    w.append(_batch(book, trades, 0, 800, 0, t_hi), KEEP_MS)
    featurise_markets([w], first, (1, "a"))
    assert w.rows_to_featurise((1, "a"), first.window) == 0
    assert w.rows_to_featurise((2, "b"), second.window) == second.window
    featurise_markets([w], second, (2, "b"))
    frame = compute_features(book, trades, config=second.bundle.feature_config)
    z = w.model_input(second.window, second.bundle.feature_config.max_gap_ms)
    assert z is not None
    np.testing.assert_allclose(z, second.normalize(frame.X[-second.window :]), rtol=1e-4, atol=1e-5)
