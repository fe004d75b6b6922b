"""Live serving benchmark: one ``ingest_market_data`` call's compute path in the ml worker for 1, 100 and 200
markets, in the same run:

- serving (now): the collector's packed batch decoded (``market.batchwire``), appended to the compiled
  live state, the new rows featurised and their LSTM input projections stored (``mlmodel.live``), the
  recurrence run by the compiled kernel straight from the projection ring (``mlmodel.lstm_kernel``);
- torch forward (baseline 1): the same live state and features, the windows gathered and one batched torch
  forward pass (how serving worked before the kernel), run interleaved with "now" on the same batches;
- pooled: the same compiled path serving one pooled LSTM (``mlmodel.services.pooled``: per-market
  normalisation rows, the market embedding folded into per-market gate-bias rows) for every market, fed the
  same messages interleaved with "now" (one model for all markets vs one model shared by all of them);
- per-market (baseline 2): each market's bounded tail featurised with ``compute_features`` on its own, the
  newest window taken, one batched ``predict_markets`` call (how serving worked before the live state).

1 torch / BLAS thread. Prints p50/p99 with a breakdown (decode / append / features + forward) and the
speed-ups; checks that both paths predict the same. No database: the Django parts of a call (one
active-model query, one bulk insert) are not included. The per-market baseline runs fewer calls (it is slow),
so its p99 is close to its max.

    .venv/bin/python bench/bench_ml_serving.py              # 1, 100 and 200 markets, 300 calls each
    .venv/bin/python bench/bench_ml_serving.py --quick      # 1 and 20 markets, 40 calls
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# mlmodel.serving imports the registry's models: Django's app registry first (no database is used).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")
import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from django.conf import settings  # noqa: E402

from market import batchwire  # noqa: E402
from market.dayfiles import BookArrays, TradeArrays  # noqa: E402
from mlmodel import lstm_kernel  # noqa: E402
from mlmodel.dataset import Normalizer  # noqa: E402
from mlmodel.features import FeatureConfig, compute_features, feature_names  # noqa: E402
from mlmodel.inference import Predictor, latest_window  # noqa: E402
from mlmodel.live import LiveState, ModelSpec  # noqa: E402
from mlmodel.nets import LSTMConfig, LSTMRegressor, PooledLSTMConfig, PooledLSTMRegressor  # noqa: E402
from mlmodel.serving import live_predictions  # noqa: E402
from mlmodel.training import ModelBundle, TrainConfig  # noqa: E402
from tests.mlmodel.synth import column_batch, synthetic_market  # noqa: E402

KEEP_MS = 300_000
FEED_LEVELS = 15  # MARKET_PREDICTION_LEVELS: the collector sends the first 15 of the 30 levels it records
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


def pooled_predictor(markets: list[str], window: int = 50, hidden: int = 32) -> Predictor:
    """A pooled model over ``markets``: each market its own normalisation and embedding row."""
    cfg = FeatureConfig()
    names = feature_names(cfg)
    torch.manual_seed(0)
    net = PooledLSTMRegressor(PooledLSTMConfig(n_features=len(names), n_markets=len(markets), hidden=hidden))
    rng = np.random.default_rng(0)
    norms = tuple(
        Normalizer(mean=rng.normal(0, 0.1, len(names)), std=rng.uniform(0.8, 1.2, len(names)))
        for _ in markets
    )
    bundle = ModelBundle(
        model=net,
        train_config=TrainConfig(window=window, hidden=hidden),
        normalizer=norms[0],
        feature_config=cfg,
        feature_names=names,
        horizon_s=10.0,
        y_scale=1e-3,
        markets=tuple(markets),
        normalizers=norms,
    )
    return Predictor(bundle, device="cpu")


batch_rows = column_batch  # rows lo..hi-1 and the trades since the previous snapshot


def packed_message(series: list[tuple[BookArrays, TradeArrays]], names: list[str], lo: int, hi: int) -> str:
    """What the collector sends for one call, as the JSON text the broker carries."""
    cols = {n: batch_rows(b, t, lo, hi) for n, (b, t) in zip(names, series, strict=True)}
    for c in cols.values():
        for k in ("ask_px", "ask_sz", "bid_px", "bid_sz"):
            c[k] = [row[:FEED_LEVELS] for row in c[k]]
    packed = batchwire.from_columns(cols)
    return json.dumps({"packed": batchwire.encode(packed)})


def _cols(x: BookArrays | TradeArrays) -> list[np.ndarray]:
    return [getattr(x, f.name) for f in dataclasses.fields(x)]


def _cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])  # optional columns stay unset


def _take(a: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if a is None else a[rows]


class PerMarket:
    """The baseline: per-market numpy history, features of each market's tail computed on their own."""

    def __init__(self) -> None:
        self.books: dict[str, BookArrays] = {}
        self.trades: dict[str, TradeArrays] = {}

    def append(self, name: str, book: BookArrays, trades: TradeArrays, lo: int, hi: int) -> None:
        t_lo = int(np.searchsorted(trades.ts, book.ts[lo - 1], side="right")) if lo else 0
        t_hi = int(np.searchsorted(trades.ts, book.ts[hi - 1], side="right"))
        old, told = self.books.get(name), self.trades.get(name)
        cut = slice(lo, hi)
        new = BookArrays(ts=book.ts[cut], ask_px=book.ask_px[cut], ask_sz=book.ask_sz[cut],
                         bid_px=book.bid_px[cut], bid_sz=book.bid_sz[cut])  # fmt: skip
        tn = TradeArrays(ts=trades.ts[t_lo:t_hi], price=trades.price[t_lo:t_hi],
                         volume=trades.volume[t_lo:t_hi], side=trades.side[t_lo:t_hi])  # fmt: skip
        if old is not None:
            new = BookArrays(*(_cat(a, b) for a, b in zip(_cols(old), _cols(new), strict=True)))
            tn = TradeArrays(*(_cat(a, b) for a, b in zip(_cols(told), _cols(tn), strict=True)))
        keep = new.ts >= new.ts[-1] - KEEP_MS
        self.books[name] = BookArrays(*(_take(a, keep) for a in _cols(new)))
        tkeep = tn.ts >= new.ts[-1] - KEEP_MS
        self.trades[name] = TradeArrays(*(_take(a, tkeep) for a in _cols(tn)))

    def predict(self, pred: Predictor) -> dict[str, float]:
        cfg = pred.bundle.feature_config
        latest = {}
        for name, book in self.books.items():
            since = int(book.ts[-pred.window]) - cfg.lookback_ms
            lo = int(np.searchsorted(book.ts, since))
            tr = self.trades[name]
            tlo = int(np.searchsorted(tr.ts, since))
            tail_book = BookArrays(*(None if a is None else a[lo:] for a in _cols(book)))
            tail_trades = TradeArrays(*(None if a is None else a[tlo:] for a in _cols(tr)))
            frame = compute_features(tail_book, tail_trades, config=cfg)
            x = latest_window(frame, pred.window)
            if x is not None:
                latest[name] = x
        return pred.predict_markets(latest)


def run_now(n_markets: int, calls: int, pred: Predictor) -> dict[str, dict[str, np.ndarray]]:
    """The compiled path and the torch path, each with its own live state, fed the same messages in turn
    (alternating which goes first)."""
    warm = KEEP_MS // 200  # a full kept window of history first
    series = [synthetic_market(warm + calls * STEP + 1, seed=s, levels=30) for s in range(n_markets)]
    names = [f"KRW-M{m}" for m in range(n_markets)]
    pooled = pooled_predictor(names)
    paths = {
        "now": ModelSpec.of(1, pred, compiled=True),
        "torch": ModelSpec.of(2, pred, compiled=False),
        "pooled": ModelSpec.of(3, pooled, compiled=True),
        "pooled_torch": ModelSpec.of(4, pooled, compiled=False),
    }
    preds = {"now": pred, "torch": pred, "pooled": pooled, "pooled_torch": pooled}
    assert paths["now"].lstm is not None and paths["pooled"].lstm is not None
    states = {k: LiveState(keep_ms=KEEP_MS) for k in paths}
    first = batchwire.from_columns(
        {n: batch_rows(b, t, 0, warm) for n, (b, t) in zip(names, series, strict=True)}
    )
    for st in states.values():
        st.append(first)
    times = {k: {p: [] for p in ("total", "decode", "append", "predict")} for k in paths}
    for c in range(calls):
        msg = packed_message(series, names, warm + c * STEP, warm + (c + 1) * STEP)
        outs = {}
        order = list(paths) if c % 2 == 0 else list(paths)[::-1]  # whoever goes first pays the message's GC
        for k in order:
            spec, st = paths[k], states[k]
            t0 = time.perf_counter()
            batch = batchwire.decode(json.loads(msg)["packed"])
            t1 = time.perf_counter()
            midx = st.append(batch)
            t2 = time.perf_counter()
            ok, out = live_predictions(st, spec, preds[k], midx)
            t3 = time.perf_counter()
            assert len(out) == n_markets
            outs[k] = out
            for p, v in zip(times[k], (t3 - t0, t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[k][p].append(v * 1000)
        np.testing.assert_allclose(outs["now"], outs["torch"], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(outs["pooled"], outs["pooled_torch"], rtol=1e-3, atol=1e-8)
    return {k: {p: np.asarray(v) for p, v in d.items()} for k, d in times.items()}


def run_baseline(n_markets: int, calls: int, pred: Predictor) -> np.ndarray:
    warm = KEEP_MS // 200
    series = [synthetic_market(warm + calls * STEP + 1, seed=s, levels=30) for s in range(n_markets)]
    names = [f"KRW-M{m}" for m in range(n_markets)]
    base = PerMarket()
    for name, (b, t) in zip(names, series, strict=True):
        base.append(name, b, t, 0, warm)
    times = []
    for c in range(calls):
        lo, hi = warm + c * STEP, warm + (c + 1) * STEP
        t0 = time.perf_counter()
        for name, (b, t) in zip(names, series, strict=True):
            base.append(name, b, t, lo, hi)
        out = base.predict(pred)
        times.append(time.perf_counter() - t0)
        assert len(out) == n_markets
    return np.asarray(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings.ML_SERVING_THREADS = args.threads  # no database needed: only mlmodel.conf's settings are read
    pred = predictor()
    sizes, calls = ((1, 20), 40) if args.quick else ((1, 100, 200), 300)
    print(
        f"ingest compute path, {STEP} new snapshots per market per call, {FEED_LEVELS} of 30 levels sent, "
        f"{KEEP_MS // 1000} s kept, LSTM hidden 32 window 50, CPU threads {args.threads}"
    )
    for n in sizes:
        before = run_baseline(n, calls if n == 1 else max(calls // 15, 10), pred)
        with lstm_kernel.blas_threads(args.threads):  # the kernel's BLAS products
            res = run_now(n, calls, pred)
        now, tor, pool = res["now"], res["torch"], res["pooled"]
        p50b, p99b = np.percentile(before, [50, 99])
        p50n, p99n = np.percentile(now["total"], [50, 99])
        p50t, p99t = np.percentile(tor["total"], [50, 99])
        parts = "  ".join(f"{k} {np.median(v):.2f}" for k, v in now.items() if k != "total")
        print(
            f"{n:4d} market(s): serving p50 {p50n:6.2f} ms  p99 {p99n:6.2f} ms  (p50 {parts}; features + "
            f"forward {np.median(tor['predict']):.2f} with torch) | torch forward p50 {p50t:6.2f} ms  p99 "
            f"{p99t:6.2f} ms (x{p50t / p50n:.2f}) | per-market ({len(before)} calls) p50 {p50b:7.2f} ms  "
            f"p99 {p99b:7.2f} ms (x{p50b / p50n:.1f})",
            flush=True,
        )
        p50p, p99p = np.percentile(pool["total"], [50, 99])
        print(
            f"{n:4d} market(s): pooled model (one LSTM, {n} embedding rows) p50 {p50p:6.2f} ms  p99 "
            f"{p99p:6.2f} ms  (x{p50p / p50n:.2f} of one shared model's p50, x{p99p / p99n:.2f} of its p99)",
            flush=True,
        )


if __name__ == "__main__":
    main()
