"""Live serving benchmark: one ``ingest_market_data`` call's compute path in the ml worker (append the new
snapshots, featurise, batch-predict) for 1 and N markets, featurising only the tail the newest window depends
on (what serving does) vs the whole kept window (the naive way), in the same run. Prints p50/p99 and ratios.
No database: the Django parts of a call (one active-model query, one bulk insert) are not included.

    .venv/bin/python bench/bench_ml_serving.py              # 1 and 100 markets, 200 calls each
    .venv/bin/python bench/bench_ml_serving.py --quick      # 1 and 20 markets, 50 calls
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from market.dayfiles import BookArrays, TradeArrays  # noqa: E402
from mlmodel.dataset import Normalizer  # noqa: E402
from mlmodel.features import FeatureConfig, compute_features, feature_names  # noqa: E402
from mlmodel.inference import Predictor, latest_window  # noqa: E402
from mlmodel.nets import LSTMConfig, LSTMRegressor  # noqa: E402
from mlmodel.serving import MarketWindow  # noqa: E402
from mlmodel.training import ModelBundle, TrainConfig  # noqa: E402
from tests.mlmodel.synth import synthetic_market  # noqa: E402

KEEP_MS = 300_000
STEP = 5  # snapshots per market per call (~1 s at 5 Hz)


def predictor(window: int = 50, hidden: int = 32) -> Predictor:
    cfg = FeatureConfig()
    names = feature_names(cfg)
    torch.manual_seed(0)
    net = LSTMRegressor(LSTMConfig(n_features=len(names), hidden=hidden))
    bundle = ModelBundle(
        model=net,
        train_config=TrainConfig(window=window, hidden=hidden),
        normalizer=Normalizer(mean=np.zeros(len(names)), std=np.ones(len(names))),
        feature_config=cfg,
        feature_names=names,
        horizon_s=10.0,
        y_scale=1e-3,
    )
    return Predictor(bundle, device="cpu")


def batch_rows(book: BookArrays, trades: TradeArrays, lo: int, hi: int) -> dict[str, Any]:
    t_lo = int(np.searchsorted(trades.ts, book.ts[lo - 1], side="right")) if lo else 0
    t_hi = int(np.searchsorted(trades.ts, book.ts[hi - 1], side="right"))
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


def run(n_markets: int, calls: int, *, tail: bool, pred: Predictor) -> np.ndarray:
    warm = KEEP_MS // 200  # a full kept window of history first
    total = warm + calls * STEP + 1
    series = [synthetic_market(total, seed=s, levels=30) for s in range(n_markets)]
    windows = [MarketWindow() for _ in range(n_markets)]
    for w, (book, trades) in zip(windows, series, strict=True):
        w.append(batch_rows(book, trades, 0, warm), KEEP_MS)
    cfg = pred.bundle.feature_config
    times = []
    for c in range(calls):
        lo, hi = warm + c * STEP, warm + (c + 1) * STEP
        payload = [batch_rows(b, t, lo, hi) for b, t in series]  # decoded JSON, as the task receives it
        t0 = time.perf_counter()
        latest = {}
        for m, (w, data) in enumerate(zip(windows, payload, strict=True)):
            w.append(data, KEEP_MS)
            since = w.tail_since(pred.window, cfg.lookback_ms) if tail else None
            frame = compute_features(w.book(since), w.trades(since), config=cfg)
            x = latest_window(frame, pred.window)
            if x is not None:
                latest[f"M{m}"] = x
        out = pred.predict_markets(latest)
        times.append(time.perf_counter() - t0)
        assert len(out) == n_markets
    return np.asarray(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = predictor()
    many, calls = (20, 50) if args.quick else (100, 200)
    print(
        f"ingest compute path, {STEP} new snapshots per market per call, 30 levels, "
        f"{KEEP_MS // 1000} s kept, LSTM hidden 32 window 50, CPU threads {args.threads}"
    )
    for n in (1, many):
        naive = run(n, max(calls // 4, 10), tail=False, pred=pred)
        fast = run(n, calls, tail=True, pred=pred)
        p50n, p99n = np.percentile(naive, [50, 99])
        p50f, p99f = np.percentile(fast, [50, 99])
        print(
            f"{n:4d} market(s): tail featurisation p50 {p50f:7.2f} ms  p99 {p99f:7.2f} ms | whole window p50 "
            f"{p50n:7.2f} ms  p99 {p99n:7.2f} ms | speed-up x{p50n / p50f:.1f} (p50)"
        )


if __name__ == "__main__":
    main()
