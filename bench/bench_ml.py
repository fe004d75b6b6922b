"""ML benchmarks: featurisation and backtest speed on a day of 5 Hz snapshots (vs a naive per-row Python
loop in the same run), inference latency (one market, ~200 markets batched vs one call per market) and
training throughput. Prints medians and ratios.

    .venv/bin/python bench/bench_ml.py            # a full day: 432,000 snapshots, 30 levels
    .venv/bin/python bench/bench_ml.py --quick    # a tenth of a day, for a smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from market.dayfiles import BookArrays  # noqa: E402
from mlmodel.backtest import BacktestConfig, run_backtest, walk_buy, walk_sell  # noqa: E402
from mlmodel.dataset import Normalizer, WindowSet  # noqa: E402
from mlmodel.features import FeatureConfig, compute_features  # noqa: E402
from mlmodel.inference import Predictor  # noqa: E402
from mlmodel.nets import LSTMConfig, LSTMRegressor  # noqa: E402
from mlmodel.training import ModelBundle, TrainConfig, pick_device  # noqa: E402
from tests.mlmodel.synth import synthetic_market  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` runs (and the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def naive_backtest(book: BookArrays, idx: np.ndarray, pred: np.ndarray, cfg: BacktestConfig) -> float:
    """The obvious implementation: one Python iteration per decision and per snapshot, same rules."""
    cash, pos, next_free, open_trip = cfg.initial_cash, 0.0, -(2**62), False
    ts = book.ts.tolist()
    for k in range(len(idx)):
        i = int(idx[k])
        a1, b1 = float(book.ask_px[i, 0]), float(book.bid_px[i, 0])
        mid = (a1 + b1) / 2
        edge = cfg.threshold + 2 * cfg.fee_rate + cfg.spread_cost_factor * (a1 - b1) / mid
        t = ts[i]
        if t < next_free:
            continue
        p = float(pred[k])
        j = i
        while j + 1 < len(ts) and ts[j + 1] <= t + cfg.latency_ms:
            j += 1
        if p > edge:
            if pos * b1 >= cfg.min_total_krw:
                continue  # one lot held
            budget = min(cfg.order_krw, cash / (1 + cfg.fee_rate))
            if budget < cfg.min_total_krw:
                next_free = t + cfg.cooldown_ms
                continue
            vol, funds, _ = walk_buy(book.ask_px[j], book.ask_sz[j], budget, decimals=cfg.volume_decimals)
            if vol > 0:
                cash -= funds + funds * cfg.fee_rate
                pos = round(pos + vol, cfg.volume_decimals)
                open_trip = True
                next_free = t + cfg.latency_ms + cfg.cooldown_ms
        elif p < -edge and pos > 0:
            bid_j = float(book.bid_px[j, 0])
            volume = math.floor(round(pos * 10**cfg.volume_decimals, 3)) / 10**cfg.volume_decimals
            if volume * bid_j < cfg.min_total_krw:
                if open_trip:
                    next_free = t + cfg.cooldown_ms
                continue
            vol, funds, _ = walk_sell(book.bid_px[j], book.bid_sz[j], volume, decimals=cfg.volume_decimals)
            if vol > 0:
                cash += funds - funds * cfg.fee_rate
                pos = round(pos - vol, cfg.volume_decimals)
                if pos * bid_j < cfg.min_total_krw:
                    open_trip = False
                next_free = t + cfg.latency_ms + cfg.cooldown_ms
    equity = []  # marked to the best bid, snapshot by snapshot
    for i in range(int(idx[0]), len(ts)):
        equity.append(cash + pos * float(book.bid_px[i, 0]))
    last = len(ts) - 1
    bid_last = float(book.bid_px[last, 0])
    if pos > 0 and pos * bid_last >= cfg.min_total_krw:
        vol, funds, _ = walk_sell(book.bid_px[last], book.bid_sz[last], pos, decimals=cfg.volume_decimals)
        cash += funds - funds * cfg.fee_rate
        pos = round(pos - vol, cfg.volume_decimals)
    cash += pos * bid_last  # dust stays in the account, marked at the bid
    return cash - cfg.initial_cash


def bench_features_and_backtest(rows: int, repeat: int) -> None:
    t0 = time.perf_counter()
    book, trades = synthetic_market(rows, seed=1, levels=30)
    print(
        f"generated {rows:,} snapshots x 30 levels, {len(trades):,} trades "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    cfg = FeatureConfig()
    t_feat, frame = timed(lambda: compute_features(book, trades, config=cfg), repeat)
    assert frame is not None
    print(
        f"features      : {t_feat:8.3f} s median  ({rows / t_feat:,.0f} snapshots/s, "
        f"{frame.X.shape[1]} features)"
    )

    rng = np.random.default_rng(0)
    # Predictions with some skill so that the rule trades a realistic amount (a few hundred round trips).
    mid = (book.ask_px[:, 0] + book.bid_px[:, 0]) / 2
    fut = np.r_[np.log(mid[25:] / mid[:-25]), np.zeros(25)]
    pred = 0.8 * fut + rng.normal(0, 0.001, rows)
    idx = np.arange(rows)
    bt_cfg = BacktestConfig(threshold=0.0005, cooldown_ms=5000, latency_ms=100)
    t_fast, res = timed(lambda: run_backtest(book, idx, pred, config=bt_cfg), repeat)
    t_naive, naive_pnl = timed(lambda: naive_backtest(book, idx, pred, bt_cfg), 1)
    fast_pnl = res.metrics["net_pnl"]  # type: ignore[union-attr]
    print(f"backtest      : {t_fast:8.3f} s median  ({int(res.metrics['n_fills'])} fills)")  # type: ignore[union-attr]
    print(f"naive loop    : {t_naive:8.3f} s          same rules, one Python step per row")
    print("  (predictions are noisy synthetic foresight; the P&L only cross-checks the two implementations)")
    print(
        f"  speed-up    : {t_naive / t_fast:8.1f} x   net P&L fast {fast_pnl:,.2f} "
        f"vs naive {naive_pnl:,.2f} KRW"
    )
    if not math.isclose(fast_pnl, float(naive_pnl), rel_tol=0.0, abs_tol=0.01):  # type: ignore[arg-type]
        print("  WARNING: the two implementations disagree")


def bench_hftbacktest(python: str, rows: int, levels: int = 10) -> None:
    """The same rule in hftbacktest (its own virtualenv) on the same books, trades and predictions."""
    import json
    import subprocess
    import tempfile

    from mlmodel.ticks import krw_tick_size

    book, trades = synthetic_market(rows, seed=1, levels=levels)
    rng = np.random.default_rng(0)
    mid = (book.ask_px[:, 0] + book.bid_px[:, 0]) / 2
    fut = np.r_[np.log(mid[25:] / mid[:-25]), np.zeros(25)]
    pred = 0.8 * fut + rng.normal(0, 0.001, rows)
    cfg = BacktestConfig(threshold=0.0005, cooldown_ms=5000, latency_ms=100, close_at_end=False)
    t_fast, res = timed(lambda: run_backtest(book, np.arange(rows), pred, config=cfg), 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(
            path,
            ts=book.ts,
            ask_px=book.ask_px,
            ask_sz=book.ask_sz,
            bid_px=book.bid_px,
            bid_sz=book.bid_sz,
            t_ts=trades.ts,
            t_px=trades.price,
            t_vol=trades.volume,
            t_side=trades.side,
            pred=pred,
        )
        hcfg = {**cfg.to_dict(), "tick": float(krw_tick_size(np.array([float(np.nanmedian(mid))]))[0])}
        script = str(Path(__file__).with_name("hftbacktest_compare.py"))
        out = subprocess.run(
            [python, script, str(path), json.dumps(hcfg)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if out.returncode != 0:
        print(f"hftbacktest   : failed ({out.stderr.strip().splitlines()[-1:]})")
        return
    h = json.loads(out.stdout.strip().splitlines()[-1])
    m = res.metrics  # type: ignore[union-attr]
    print(f"hftbacktest 2.x ({rows:,} snapshots x {levels} levels = {int(h['events']):,} L2 events):")
    print(
        f"  ours        : {t_fast:8.3f} s   {int(m['n_fills'])} fills, "
        f"P&L marked at the bid {m['net_pnl']:,.0f} KRW"
    )
    print(
        f"  hftbacktest : {h['run_s']:8.3f} s   {int(h['orders'])} orders, P&L marked at the bid "
        f"{h['pnl_marked']:,.0f} KRW (+{h['convert_s']:.2f} s converting snapshots to events, "
        f"{h['compile_s']:.1f} s numba compile)"
    )
    print(
        f"  ratio       : {h['run_s'] / t_fast:8.1f} x (hftbacktest run time / ours; it replays every event)"
    )


def _bundle(n_features: int, window: int, hidden: int, device: str) -> ModelBundle:
    torch.manual_seed(0)
    model = LSTMRegressor(LSTMConfig(n_features=n_features, hidden=hidden)).to(pick_device(device)).eval()
    norm = Normalizer(mean=np.zeros(n_features), std=np.ones(n_features))
    cfg = FeatureConfig()
    return ModelBundle(
        model=model,
        train_config=TrainConfig(window=window, hidden=hidden),
        normalizer=norm,
        feature_config=cfg,
        feature_names=tuple(f"f{i}" for i in range(n_features)),
        horizon_s=10.0,
        y_scale=1e-3,
    )


def bench_inference(window: int, hidden: int, n_markets: int, calls: int, device: str) -> None:
    from mlmodel.features import feature_names

    F = len(feature_names(FeatureConfig()))
    pred = Predictor(_bundle(F, window, hidden, device), device=device)
    rng = np.random.default_rng(0)
    one = rng.normal(size=(window, F)).astype(np.float32)
    many = {f"KRW-M{i:03d}": rng.normal(size=(window, F)).astype(np.float32) for i in range(n_markets)}
    for _ in range(20):
        pred.predict_raw(one)
        pred.predict_markets(many)

    def lat(fn: Callable[[], object], n: int) -> tuple[float, float]:
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 99) * 1e3)

    p50, p99 = lat(lambda: pred.predict_raw(one), calls)
    print(
        f"inference 1 market  ({device}, W={window}, F={F}, hidden={hidden}): "
        f"p50 {p50:.3f} ms  p99 {p99:.3f} ms"
        f"  (target p99 <= 2 ms on CPU)"
    )
    b50, b99 = lat(lambda: pred.predict_markets(many), max(calls // 10, 20))
    print(f"inference {n_markets} batched: p50 {b50:.3f} ms  p99 {b99:.3f} ms  (target <= 10 ms)")
    s50, _ = lat(lambda: [pred.predict_raw(w) for w in many.values()], 5)
    print(f"  one call per market instead: p50 {s50:.1f} ms -> batching is {s50 / b50:.1f} x faster")


def bench_training(window: int, hidden: int, samples: int, device: str) -> None:
    from mlmodel.training import train_lstm

    F = 66
    rng = np.random.default_rng(0)
    n = samples + window
    X = rng.normal(size=(n, F)).astype(np.float32)
    y = (X[:, 0] * 1e-3 + rng.normal(0, 1e-3, n)).astype(np.float32)
    ends = np.arange(window - 1, n)
    ws = WindowSet(X, ends, y[ends], ends.astype(np.int64), window)
    val = WindowSet(X, ends[:2000], y[ends[:2000]], ends[:2000].astype(np.int64), window)
    cfg = TrainConfig(window=window, hidden=hidden, max_epochs=2, patience=5, batch_size=256, device=device)
    t0 = time.perf_counter()
    b = train_lstm(
        ws,
        val,
        config=cfg,
        normalizer=Normalizer.fit(X),
        feature_config=FeatureConfig(),
        feature_names=tuple(f"f{i}" for i in range(F)),
        horizon_s=10.0,
    )
    secs = [h["seconds"] for h in b.history]
    total = time.perf_counter() - t0
    print(
        f"training ({device}, W={window}, hidden={hidden}, batch 256): "
        f"{len(ws) / statistics.median(secs):,.0f}"
        f" samples/s per epoch (median of {len(secs)} epochs incl. validation; {total:.1f} s total)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tenth of a day and fewer repetitions")
    ap.add_argument("--rows", type=int, default=None, help="snapshots for the feature/backtest benchmark")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training/inference); cpu is the target")
    ap.add_argument(
        "--hftbacktest",
        metavar="PYTHON",
        default=None,
        help="interpreter of a virtualenv with hftbacktest==2.4.4 (e.g. var/hftbt-venv/bin/python)",
    )
    ap.add_argument("--only", choices=["backtest", "inference", "training", "hftbacktest"], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = args.rows or (43_200 if args.quick else 432_000)
    repeat = 1 if args.quick else 3
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"cuda {torch.cuda.is_available()}"
    )
    if args.only in (None, "backtest"):
        bench_features_and_backtest(rows, repeat)
    if args.hftbacktest and args.only in (None, "hftbacktest"):
        bench_hftbacktest(args.hftbacktest, rows)
    if args.only in (None, "inference"):
        bench_inference(
            window=50, hidden=32, n_markets=200, calls=300 if args.quick else 2000, device=args.device
        )
    if args.only in (None, "training"):
        bench_training(window=50, hidden=32, samples=5_000 if args.quick else 50_000, device=args.device)
    if args.only is None and args.device == "cpu" and torch.cuda.is_available():
        bench_inference(window=50, hidden=32, n_markets=200, calls=500, device="cuda")
        bench_training(window=50, hidden=32, samples=200_000, device="cuda")


if __name__ == "__main__":
    main()
