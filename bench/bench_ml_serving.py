"""Live serving benchmark: one ``ingest_market_data`` call's compute path in the ml worker (append the new
snapshots, featurise, batch-predict) for 1, 100 and 200 markets, in the same run:

- serving (now): ``Server._predict_group`` - the new snapshots' feature rows of all markets in one stacked,
  vectorised pass, per-market buffers of normalised rows, one batched forward pass with 1 torch thread;
- per-market (before): each market's bounded tail featurised on its own, the newest window taken, one
  batched ``predict_markets`` call (the path serving used until now).

Prints p50/p99 and the speed-up. No database: the Django parts of a call (one active-model query, one bulk
insert) are not included. The per-market path runs fewer calls (it is slow), so its p99 is close to its max.

    .venv/bin/python bench/bench_ml_serving.py              # 1, 100 and 200 markets, 200 calls each
    .venv/bin/python bench/bench_ml_serving.py --quick      # 1 and 20 markets, 40 calls
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
from django.conf import settings  # noqa: E402

from market.dayfiles import BookArrays, TradeArrays  # noqa: E402
from mlmodel.dataset import Normalizer  # noqa: E402
from mlmodel.features import FeatureConfig, compute_features, feature_names  # noqa: E402
from mlmodel.inference import Predictor, latest_window  # noqa: E402
from mlmodel.nets import LSTMConfig, LSTMRegressor  # noqa: E402
from mlmodel.serving import LoadedModel, MarketWindow, Server  # noqa: E402
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


def run(n_markets: int, calls: int, *, incremental: bool, pred: Predictor) -> np.ndarray:
    warm = KEEP_MS // 200  # a full kept window of history first
    total = warm + calls * STEP + 1
    series = [synthetic_market(total, seed=s, levels=30) for s in range(n_markets)]
    server = Server()
    names = [f"M{m}" for m in range(n_markets)]
    for name, (book, trades) in zip(names, series, strict=True):
        server.windows[name] = MarketWindow()
        server.windows[name].append(batch_rows(book, trades, 0, warm), KEEP_MS)
    loaded = LoadedModel(1, "bench", "sha", pred)
    cfg = pred.bundle.feature_config
    times = []
    for c in range(calls):
        lo, hi = warm + c * STEP, warm + (c + 1) * STEP
        payload = [batch_rows(b, t, lo, hi) for b, t in series]  # decoded JSON, as the task receives it
        t0 = time.perf_counter()
        for name, data in zip(names, payload, strict=True):
            server.windows[name].append(data, KEEP_MS)
        if incremental:
            out = server._predict_group(loaded, names)
        else:
            latest = {}
            for name in names:
                w = server.windows[name]
                since = w.tail_since(pred.window, cfg.lookback_ms)
                frame = compute_features(w.book(since), w.trades(since), config=cfg)
                x = latest_window(frame, pred.window)
                if x is not None:
                    latest[name] = x
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
    if not settings.configured:  # no database needed: only mlmodel.conf's defaults are read
        settings.configure(ML_SERVING_THREADS=args.threads)
    pred = predictor()
    sizes, calls = ((1, 20), 40) if args.quick else ((1, 100, 200), 200)
    print(
        f"ingest compute path, {STEP} new snapshots per market per call, 30 levels, "
        f"{KEEP_MS // 1000} s kept, LSTM hidden 32 window 50, CPU threads {args.threads}"
    )
    for n in sizes:
        before = run(n, calls if n == 1 else max(calls // 10, 10), incremental=False, pred=pred)
        now = run(n, calls, incremental=True, pred=pred)
        p50b, p99b = np.percentile(before, [50, 99])
        p50n, p99n = np.percentile(now, [50, 99])
        print(
            f"{n:4d} market(s): serving p50 {p50n:7.2f} ms  p99 {p99n:7.2f} ms | per-market path "
            f"({len(before)} calls) p50 {p50b:7.2f} ms  p99 {p99b:7.2f} ms"
            f" | speed-up x{p50b / p50n:.1f} (p50)",
            flush=True,
        )


if __name__ == "__main__":
    main()
