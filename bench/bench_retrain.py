"""The nightly retrain's compute for N markets x M minutes of synthetic order-book data: per-market LSTMs
(one walk-forward run per market, as before issue 16) against the pooled LSTM (one model per split on every
market's windows, then each market's walk-forward evaluation and gate, ``mlmodel.services.pooled``), in the
same run on the same day files.

Both modes run exactly what the nightly job computes (day files read, features, labels, walk-forward splits,
LSTM, persistence / ridge-OFI / GBT baselines, backtests, the per-market gate); only the registry writes (a
few rows and one artifact) are left out. Prints, per mode, the median wall and CPU seconds over
``--repeats`` runs, the share spent training LSTMs, the ratio per-market / pooled, and a linear extrapolation
to 200 markets x 5 days: seconds per market-minute x 200 x 7,200. The extrapolation is an upper bound for
both: at 5 Hz a market's 5 days are 2.16 M rows and every LSTM epoch is capped at ML_MAX_SAMPLES_PER_EPOCH
samples (per market for the per-market models, over all markets for the pooled one).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_retrain.py                  # 4 markets x 20 min, 3 runs
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_retrain.py --markets 2 --minutes 10 --repeats 1

``--night`` measures the nightly pooled job at its real size instead of extrapolating it: one market with
``--big-days`` (5) days of 5 Hz day files, read, sampled and evaluated as the job does it (the per-market
parts), and the pooled LSTM trained on the bounded samples of ``--night-markets`` (200) markets (the others
generated in memory, each a little past ML_POOLED_ROWS_PER_MARKET rows so every one is sampled). The night on
one core is N x (read + sample) + the pooled training + N x (read + evaluate); the baseline, in the same run,
is the big market's evaluation without ML_MAX_EVAL_WINDOWS (``--no-baseline`` skips it).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_retrain.py --night
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_retrain.py --night --night-markets 5 --big-days 0.2
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")

import django  # noqa: E402

django.setup()
logging.disable(logging.WARNING)  # matplotlib's font fallbacks while rendering the reports' plots

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlmodel import training  # noqa: E402
from mlmodel.services import pooled as pooled_service  # noqa: E402
from mlmodel.services import train as train_service  # noqa: E402
from mlmodel.services.data import MarketData, market_data_load, training_days  # noqa: E402
from mlmodel.services.params import POOLED_MARKET, TrainParams  # noqa: E402
from mlmodel.services.train import pipeline_run  # noqa: E402
from tests.mlmodel.platform.daydata import START_MS, write_day_files  # noqa: E402
from tests.mlmodel.synth import synthetic_market  # noqa: E402

NIGHT_MARKETS = 200
NIGHT_MINUTES = 5 * 24 * 60


class Clock:
    """Seconds spent in ``real`` (``train_lstm``: per-market LSTMs and the pooled one; ``render_plots``)."""

    def __init__(self, real: Any) -> None:
        self.seconds = 0.0
        self.real = real
        self.fits: list[tuple[int, int, int]] = []  # per LSTM training: (epochs run, train, val samples)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            out = self.real(*args, **kwargs)
            if hasattr(out, "history"):
                self.fits.append(
                    (len(out.history), int(out.meta["train_samples"]), int(out.meta["val_samples"]))
                )
            return out
        finally:
            self.seconds += time.perf_counter() - t0


def sample_epochs(fits: list[tuple[int, int, int]], *, scale: float, cap: int) -> float:
    """The LSTM work of ``fits`` with every set ``scale`` times larger: per epoch the training samples
    (capped at ML_MAX_SAMPLES_PER_EPOCH) plus the validation pass (forward only: counted as a third)."""
    return float(sum(e * (min(tr * scale, cap) + va * scale / 3.0) for e, tr, va in fits))


def market_days(root: Path, markets: list[str], minutes: float) -> None:
    """Each market ``minutes`` of 5 Hz synthetic book and trades (the ML tests' generator, a planted signal
    of a different strength per market) as collector day files."""
    n = int(minutes * 60 * 5)
    for i, market in enumerate(markets):
        book, trades = synthetic_market(
            n, seed=10 + i, start_ms=START_MS, levels=15, price=100_000.0, tick=50.0,
            signal_strength=(0.0, 1.0, 2.0, 3.0)[i % 4],
        )  # fmt: skip
        write_day_files(root, market, book, trades)


LOAD_SECONDS = [0.0]
FITS: list[list[tuple[int, int, int]]] = []  # the last timed run's LSTM trainings


def load(params: TrainParams, markets: list[str]) -> dict[str, MarketData]:
    """Day files -> features and labels, per market (timed: ``LOAD_SECONDS``)."""
    t0 = time.perf_counter()
    out = {}
    for market in markets:
        p = TrainParams.from_dict({**params.to_dict(), "market": market, "markets": []})
        out[market] = market_data_load(root=p.root, market=market, days=training_days(p), params=p)
    LOAD_SECONDS[0] += time.perf_counter() - t0
    return out


def per_market(params: TrainParams, markets: list[str]) -> dict[str, bool]:
    """The nightly job before issue 16: one walk-forward run per market."""
    passed = {}
    for market, data in load(params, markets).items():
        p = TrainParams.from_dict({**params.to_dict(), "market": market, "markets": []})
        passed[market] = bool(pipeline_run(params=p, data=data).report["promotable"])
    return passed


def pooled(params: TrainParams, markets: list[str]) -> dict[str, bool]:
    datas = load(params, markets)
    p = TrainParams.from_dict({**params.to_dict(), "market": POOLED_MARKET, "markets": markets})
    res = pooled_service.pooled_pipeline_run(params=p, datas=datas)
    return {m: bool(r.report["promotable"]) for m, r in res.results.items()}


def timed(
    fn: Any, params: TrainParams, markets: list[str]
) -> tuple[float, float, float, float, float, dict[str, bool]]:
    LOAD_SECONDS[0] = 0.0
    clock, plots = Clock(training.train_lstm), Clock(train_service.render_plots)
    training.train_lstm = clock  # LSTMModel.fit calls it through the module
    pooled_service.train_lstm = clock
    train_service.render_plots = plots
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        passed = fn(params, markets)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        FITS.append(list(clock.fits))
        return wall, cpu, clock.seconds, LOAD_SECONDS[0], plots.seconds, passed
    finally:
        training.train_lstm = clock.real
        pooled_service.train_lstm = clock.real
        train_service.render_plots = plots.real


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _clock(fn: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def night(args: argparse.Namespace) -> None:
    import dataclasses

    from mlmodel.dataset import label_frame
    from mlmodel.features import FeatureConfig, compute_features
    from mlmodel.services.pooled import MarketSample, pooled_market_evaluate, pooled_models_fit

    n_markets, big = args.night_markets, "KRW-BIG"
    root = Path(tempfile.mkdtemp(prefix="retrain-night-"))
    rows_big = int(args.big_days * 86_400 * 5)
    w0 = time.perf_counter()
    book, trades = synthetic_market(
        rows_big, seed=7, start_ms=START_MS, levels=15, price=100_000.0, tick=50.0, signal_strength=2.0
    )
    write_day_files(root, big, book, trades)
    del book, trades
    gen_wall = time.perf_counter() - w0
    params = TrainParams.from_dict(
        {"market": POOLED_MARKET, "data_dir": str(root), "device": "cpu", "spikes": False, "days": 10}
    )
    budget = params.pooled_rows_per_market
    print(
        f"night: {n_markets} markets, {big} with {args.big_days:g} days at 5 Hz ({rows_big:,} rows, "
        f"written in {gen_wall:.0f} s); ML_POOLED_ROWS_PER_MARKET {budget:,}, ML_MAX_EVAL_WINDOWS "
        f"{params.max_eval_windows:,}, ML_MAX_SAMPLES_PER_EPOCH {params.max_samples_per_epoch:,}; "
        f"LSTM hidden {params.hidden}, window {params.window}, <= {params.epochs} epochs, "
        f"{params.n_splits} splits; 1 thread"
    )

    def load_big() -> MarketData:
        p = dataclasses.replace(params, market=big)
        return market_data_load(root=root, market=big, days=training_days(p), params=p)

    data, read_wall, read_cpu = _clock(load_big)
    c0 = time.process_time()
    sample = MarketSample.of(data.labelled, window=params.window, rows=budget)
    samp_cpu = time.process_time() - c0
    print(
        f"  {big} read (day files -> features, labels): wall {read_wall:.1f} s cpu {read_cpu:.1f} s; "
        f"sample: {samp_cpu:.2f} s cpu, {len(sample.ts):,} of {sample.rows_total:,} rows kept; "
        f"peak RSS {_rss_gib():.2f} GiB"
    )
    del data
    samples = {big: sample}
    cfg = FeatureConfig(levels=params.feature_levels)
    # The other markets as their samples would be: 5 Hz blocks spread over the same days as the big market
    # (so the common splits fall where they would), a little more than the budget so each is sampled too.
    n_small, n_blocks = int(budget * 1.1), 24
    block = n_small // n_blocks
    spread = np.repeat(np.arange(n_blocks), block) * ((rows_big - block) // (n_blocks - 1) - block) * 200
    for i in range(n_markets - 1):
        book, trades = synthetic_market(
            block * n_blocks, seed=100 + i, start_ms=START_MS, levels=15, price=100_000.0, tick=50.0,
            signal_strength=(0.0, 1.0, 2.0, 3.0)[i % 4],
        )  # fmt: skip
        book = dataclasses.replace(book, ts=book.ts + spread)
        tb = np.minimum(np.searchsorted(book.ts - spread, trades.ts, side="right"), len(spread)) - 1
        trades = dataclasses.replace(trades, ts=trades.ts + spread[np.maximum(tb, 0)])
        lf = label_frame(compute_features(book, trades, config=cfg), horizon_s=params.horizon_s)
        samples[f"KRW-S{i:03d}"] = MarketSample.of(lf, window=params.window, rows=budget)
    print(f"  {n_markets} markets' samples held: peak RSS {_rss_gib():.2f} GiB")
    fits = Clock(pooled_service.train_lstm)
    pooled_service.train_lstm = fits
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        splits, models = pooled_models_fit(params=params, samples=samples)
        fit_wall, fit_cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        pooled_service.train_lstm = fits.real
    print(
        f"  pooled LSTM, {n_markets} markets: wall {fit_wall:.1f} s cpu {fit_cpu:.1f} s "
        f"(per split: epochs, train windows, val windows {fits.fits}); peak RSS {_rss_gib():.2f} GiB"
    )
    del samples

    def evaluate(cap: int) -> Any:
        p = dataclasses.replace(params, max_eval_windows=cap)
        return pooled_market_evaluate(params=p, market=big, data=load_big(), splits=splits, models=models)

    res, ev_wall, ev_cpu = _clock(lambda: evaluate(params.max_eval_windows))
    dec = [s["samples"]["test_decisions"] for s in res.report["evaluation"]["splits"]]
    print(
        f"  {big} read + evaluate + gate (capped): wall {ev_wall:.1f} s cpu {ev_cpu:.1f} s; test decisions "
        f"per split {dec}; gate {'passed' if res.report['promotable'] else 'refused'}; "
        f"peak RSS {_rss_gib():.2f} GiB"
    )
    per_market = read_cpu + samp_cpu + ev_cpu
    total = (n_markets * per_market + fit_cpu) / 3600
    print(
        f"night on one core: {n_markets} x ({read_cpu + samp_cpu:.1f} s read + sample + {ev_cpu:.1f} s "
        f"read + evaluate) + {fit_cpu:.0f} s pooled LSTM = {total:.2f} CPU h (one ml worker runs it)"
    )
    if args.baseline:
        res0, b_wall, b_cpu = _clock(lambda: evaluate(10**9))
        dec0 = [s["samples"]["test_decisions"] for s in res0.report["evaluation"]["splits"]]
        print(
            f"  baseline, {big} read + evaluate without the cap: wall {b_wall:.1f} s cpu {b_cpu:.1f} s; test "
            f"decisions per split {dec0}; gate {'passed' if res0.report['promotable'] else 'refused'}; "
            f"peak RSS {_rss_gib():.2f} GiB"
        )
        print(
            f"ratio uncapped / capped evaluation: x{b_cpu / ev_cpu:.1f} CPU; night without the cap "
            f"{(n_markets * (read_cpu + samp_cpu + b_cpu) + fit_cpu) / 3600:.1f} CPU h"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--night", action="store_true", help="measure the nightly pooled job at its real size")
    ap.add_argument("--night-markets", type=int, default=NIGHT_MARKETS)
    ap.add_argument("--big-days", type=float, default=5.0)
    ap.add_argument("--no-baseline", dest="baseline", action="store_false")
    ap.add_argument("--markets", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=0, help="default: the training config's (ML_EPOCHS)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.night:
        night(args)
        return
    markets = [f"KRW-S{i:03d}" for i in range(args.markets)]
    root = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    market_days(root, markets, args.minutes)
    overrides: dict[str, Any] = {
        "market": markets[0],
        "data_dir": str(root),
        "device": "cpu",
        "spikes": False,
    }
    if args.epochs:
        overrides["epochs"] = args.epochs
    params = TrainParams.from_dict(overrides)
    print(
        f"{args.markets} markets x {args.minutes:g} min at 5 Hz; LSTM hidden {params.hidden}, window "
        f"{params.window}, <= {params.epochs} epochs (patience {params.patience}), {params.n_splits} splits, "
        f"baselines {', '.join(params.baselines)}; 1 torch thread; {args.repeats} run(s) per mode, "
        "interleaved"
    )
    results: dict[str, list[tuple[float, float, float, float, float]]] = {"per-market": [], "pooled": []}
    fits: dict[str, list[list[tuple[int, int, int]]]] = {"per-market": [], "pooled": []}
    training.seed_everything(0)  # torch's one-time imports (deterministic kernels) outside the timings
    gates: dict[str, dict[str, bool]] = {}
    for r in range(args.repeats):
        order = [("per-market", per_market), ("pooled", pooled)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            wall, cpu, lstm, loading, plotting, passed = timed(fn, params, markets)
            results[name].append((wall, cpu, lstm, loading, plotting))
            fits[name].append(FITS[-1])
            gates[name] = passed
            print(
                f"  run {r + 1} {name:<10} wall {wall:7.1f} s  cpu {cpu:7.1f} s  LSTM training {lstm:7.1f} s"
            )
    med = {k: np.median(np.asarray(v), axis=0) for k, v in results.items()}
    scale = NIGHT_MARKETS * NIGHT_MINUTES / (args.markets * args.minutes)
    for name, (wall, cpu, lstm, _loading, _plots) in med.items():
        passed = sum(gates[name].values())
        print(
            f"{name:<10} median wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
            f"(LSTM training {lstm / wall:4.0%} of wall)"
            f"  gate passed {passed}/{len(gates[name])} markets"
        )
    ratio = med["per-market"][0] / med["pooled"][0]
    lstm_ratio = med["per-market"][2] / max(med["pooled"][2], 1e-9)
    print(f"ratio per-market / pooled: wall x{ratio:.2f}, LSTM training x{lstm_ratio:.2f}")
    print(
        "extrapolated per part, in CPU hours of one core (the wall figures above also hold what other "
        "processes took from this box): LSTM training by its sample-epochs at that size (training sets "
        "capped per epoch at ML_MAX_SAMPLES_PER_EPOCH, same epochs as here); day files/features and the "
        "rest (baselines, backtests, intervals, gate) x markets x minutes; the plots x markets only. "
        "A linear upper bound that ignores ML_MAX_EVAL_WINDOWS and the pooled run's per-market sample: "
        "--night measures the night at its real size:"
    )
    per_market_scale = NIGHT_MARKETS / args.markets
    minutes_scale = NIGHT_MINUTES / args.minutes
    cap = params.max_samples_per_epoch
    for name in results:
        wall, cpu, lstm, loading, plotting = med[name]
        busy = cpu / wall  # the share of the wall time this process ran
        # LSTM work: the sample-epochs of this run's trainings, at 200 x 5 days with the per-epoch cap
        # (a per-market model's sets grow with the days; the pooled model's with the days and the markets).
        runs = [sample_epochs(f, scale=1.0, cap=cap) for f in fits[name]]
        per_sample = float(
            np.median([r[2] * (r[1] / r[0]) / w for r, w in zip(results[name], runs, strict=True)])
        )
        last = fits[name][-1]
        if name == "pooled":
            work = sample_epochs(last, scale=minutes_scale * per_market_scale, cap=cap)
        else:
            work = sample_epochs(last, scale=minutes_scale, cap=cap) * per_market_scale
        epochs = [e for e, _tr, _va in last]
        parts = {
            "LSTM": work * per_sample,
            "features": loading * busy * scale,
            "plots": plotting * busy * per_market_scale,
            "rest": (wall - lstm - loading - plotting) * busy * scale,
        }
        total = sum(parts.values()) / 3600
        print(
            f"  {name:<10} 200 x 5 days: {total:6.1f} CPU h = "
            + " + ".join(f"{k} {v / 3600:.1f} h" for k, v in parts.items())
            + f"; on 2 cores ~{total / 2:.1f} h  ({len(last)} LSTM trainings here, epochs {epochs}, "
            f"{per_sample * 1e6:.0f} CPU us per sample-epoch)"
        )


if __name__ == "__main__":
    main()
