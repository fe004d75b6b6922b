"""The first model on the demo's synthetic market, offline: the bootstrap's training run and promotion gate.

Generates ``--minutes`` of KRW-BTC at ``--strength`` with the simulator (event by event, sampled at the
collector's 5 Hz, 15 levels), writes it as collector day files, fits the training config exactly as
``mlmodel.bootstrap`` does (``model_bootstrap_params``; ``--horizon``/``--window`` override it) and runs the
training pipeline in-process (``pipeline_run``: walk-forward splits, the LSTM, persistence,
ridge-OFI and GBT, backtests, the real gate). Prints the gate's verdict per model, the LSTM's loss over
ridge-OFI's (the baseline, 1.00 = as good; < 1 = better) with the Diebold-Mariano p-value, and per test
period the largest predictions and the backtest's round trips and net P&L. Simulator knobs of the planted
signal (``SyntheticParams.signal_*``) can be set with ``--sim signal_lag=20,signal_tau=60``.

Usage: ``python bench/bench_first_model.py [--seeds 1,2,3] [--strength 1] [--minutes 20] [--horizon 20]
[--window 60] [--epochs 8] [--hidden 16] [--sim k=v,...]``. Figures: docs/simulator.md ("Does the first
model pass the gate on the demo market?").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")


def one(seed: int, args: argparse.Namespace) -> None:
    import numpy as np
    from django.conf import settings

    from mlmodel import bootstrap
    from mlmodel.services.data import market_data_load, training_days
    from mlmodel.services.params import TrainParams
    from mlmodel.services.train import pipeline_run
    from tests.mlmodel.platform.daydata import demo_market_days

    t0 = time.time()
    sim = {k: float(v) for k, v in (kv.split("=") for kv in args.sim.split(",") if kv)}
    root = Path(tempfile.mkdtemp(prefix="first-model-"))
    book, _trades = demo_market_days(
        root,
        "KRW-BTC",
        minutes=args.minutes,
        seed=seed,
        strength=args.strength,
        every_ms=args.every_ms,
        **sim,
    )
    settings.ML_HIDDEN, settings.ML_EPOCHS, settings.ML_DEVICE, settings.ML_SEED = (
        args.hidden,
        args.epochs,
        "cpu",
        0,
    )
    recorded = bootstrap.recorded_data_measure(root=root, market="KRW-BTC")
    p = bootstrap.model_bootstrap_params(recorded=recorded)
    if args.horizon:
        p["horizon_s"] = args.horizon
    if args.window:
        p["window"] = args.window
    if args.splits:
        p["n_splits"] = args.splits
    params = TrainParams.from_dict({**p, "market": "KRW-BTC", "data_dir": str(root)})
    data = market_data_load(root=root, market="KRW-BTC", days=training_days(params), params=params)
    res = pipeline_run(params=params, data=data)
    mid = np.log((book.ask_px[:, 0] + book.bid_px[:, 0]) / 2.0)
    step = int(round(60_000 / float(np.median(np.diff(book.ts)))))
    vol_1m = float(np.std(mid[step:] - mid[:-step])) if len(mid) > step else float("nan")
    print(
        f"seed {seed}: {recorded.seconds / 60:.1f} min, {len(book)} rows, horizon {params.horizon_s} s, "
        f"window {params.window}, 1-min volatility {vol_1m * 100:.2f} %, {time.time() - t0:.0f} s"
    )
    for name, r in res.report["gate"].items():
        print(f"  {name:<10} {'PASS' if r['passed'] else 'refused'}: {r['reason']}")
    lstm = res.report["gate"]["lstm"]
    for c in lstm["comparisons"]:
        if c["against"] == "linear_ofi":
            mse = {
                m: float(
                    np.mean(
                        np.concatenate([(o[m].test_pred - o[m].test_y) ** 2 for o in res.outcomes.values()])
                    )
                )
                for m in ("lstm", "linear_ofi")
            }
            print(
                f"  LSTM loss / ridge-OFI loss {mse['lstm'] / mse['linear_ofi']:.3f} (p={c['p_value']:.3g})"
            )
    for k in sorted(res.outcomes):
        for m in ("linear_ofi", "lstm"):
            o = res.outcomes[k][m]
            pr = np.abs(np.asarray(o.test_pred))
            bt = o.backtest.get("metrics", o.backtest)
            print(
                f"  split {k} {m:<10} |pred| p99 {np.quantile(pr, 0.99) * 100:.3f} %"
                f" max {pr.max() * 100:.3f} %,"
                f" std y {np.std(o.test_y) * 100:.3f} %, round trips {bt.get('n_round_trips', 0):.0f},"
                f" net {bt.get('net_pnl', 0.0):,.0f} KRW"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--horizon", type=float, default=0.0)
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--splits", type=int, default=0, help="walk-forward splits (default: the bootstrap's)")
    ap.add_argument("--sim", default="")
    ap.add_argument("--every-ms", type=int, default=200, help="sampling period (the live collector: ~55 ms)")
    args = ap.parse_args()
    import django

    django.setup()
    for seed in (int(s) for s in args.seeds.split(",")):
        one(seed, args)


if __name__ == "__main__":
    main()
