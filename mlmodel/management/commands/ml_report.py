"""``manage.py ml_report``: run the whole pipeline (features, LSTM + baselines, walk-forward evaluation,
backtest) on recorded day files - with ``--sample`` on the real Upbit KRW-ADA sample - and write an honest
Markdown report with its plots. Stores no model."""

from __future__ import annotations

import datetime as dt
import functools
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ApplicationError
from market import dayfiles
from market.uploads import sample_import
from mlmodel import conf
from mlmodel.backtest import BacktestConfig, decision_costs
from mlmodel.baselines import LinearOFI, TreeModel, ZeroReturn
from mlmodel.evaluation import (
    EvalConfig,
    ModelFactory,
    shuffled_labels,
    walk_forward_evaluate,
    walk_forward_splits_by_rows,
)
from mlmodel.management.commands.ml_bootstrap import synthetic_day_files
from mlmodel.services.data import MarketData, market_data_load, training_days
from mlmodel.services.params import TrainParams
from mlmodel.services.train import PipelineResult, pipeline_run

DEFAULT_SAMPLE = dayfiles.SAMPLE_CSV
MODEL_ORDER = ("lstm", "linear_ofi", "gbt", "persistence")
NULL_SEED = 1000  # the null control's permutation seed is NULL_SEED + the training seed


def _f(v: Any, fmt: str) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return format(x, fmt) if math.isfinite(x) else "–"


class Command(BaseCommand):
    help = "Walk-forward report of the LSTM and baselines on recorded data (--sample: the real Upbit sample)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sample", action="store_true", help="use the real Upbit KRW-ADA 2018 sample CSV"
        )
        parser.add_argument("--csv", default="", help="sample CSV path (with --sample)")
        parser.add_argument(
            "--market", default="", help="market of the day files (default KRW-ADA with --sample)"
        )
        parser.add_argument("--data-dir", default="", help="day-file root (without --sample)")
        # Defaults: the one training config (mlmodel/config.py), the same as train and nightly retraining.
        parser.add_argument("--days", type=int, default=None, help="last N days (default ML_TRAIN_DAYS)")
        parser.add_argument("--horizon", type=float, default=None, help="prediction horizon in seconds")
        parser.add_argument("--window", type=int, default=None, help="snapshots per LSTM input window")
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--splits", type=int, default=None, help="walk-forward splits")
        parser.add_argument(
            "--threshold-pct",
            type=float,
            default=None,
            help="backtest profit threshold in %% (0.05 = 0.05 %%)",
        )
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--device", default=None, help="auto | cpu | cuda")
        parser.add_argument(
            "--no-sensitivity",
            dest="sensitivity",
            action="store_false",
            help="skip the horizon/threshold sensitivity of the baselines",
        )
        parser.add_argument(
            "--synthetic",
            action="store_true",
            help="the simulator's synthetic market (with --signal-strength) instead of recorded data",
        )
        parser.add_argument(
            "--signal-strength", type=float, default=1.0, help="planted signal with --synthetic (0 = off)"
        )
        parser.add_argument("--minutes", type=float, default=120.0, help="synthetic history (--synthetic)")
        parser.add_argument(
            "--every-ms",
            type=int,
            default=200,
            help="synthetic: book sampling period in ms (the live collector records ~18 books/s: 55)",
        )
        parser.add_argument("--sim-seed", type=int, default=1, help="simulator seed (--synthetic)")
        parser.add_argument(
            "--no-null-control",
            dest="null_control",
            action="store_false",
            help="skip the null-label control (the same pipeline on shuffled labels)",
        )
        parser.add_argument("--out", default="", help="Markdown path (default docs/ml-sample-report.md)")

    def handle(self, *args: Any, **o: Any) -> None:
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        out = Path(o["out"] or (Path(settings.BASE_DIR) / "docs" / "ml-sample-report.md"))
        with tempfile.TemporaryDirectory(prefix="ml-report-") as tmp:
            if o["sample"]:
                csv = Path(o["csv"] or settings.MARKET_SAMPLE_CSV or DEFAULT_SAMPLE)
                if not csv.is_file():
                    raise CommandError(f"sample CSV not found: {csv}")
                market = (o["market"] or "KRW-ADA").upper()
                sample_import(csv_path=csv, market=market, root=tmp)
                root, source = tmp, f"real Upbit sample `{csv.name}` (converted to day files)"
            elif o["synthetic"]:
                market = (o["market"] or "KRW-BTC").upper()
                if not 10 <= o["every_ms"] <= 60_000:
                    raise CommandError(f"--every-ms must be between 10 and 60000, not {o['every_ms']}")
                n = synthetic_day_files(
                    Path(tmp),
                    market,
                    minutes=o["minutes"],
                    seed=o["sim_seed"],
                    signal_strength=o["signal_strength"],
                    every_ms=o["every_ms"],
                )
                root = tmp
                source = (
                    f"the simulator's synthetic {market} market, signal strength {o['signal_strength']:g}, "
                    f"seed {o['sim_seed']}, {o['minutes']:g} minutes sampled every {o['every_ms']} ms "
                    f"({n:,} snapshots)"
                )
            else:
                market = (o["market"] or "KRW-BTC").upper()
                root = o["data_dir"] or str(settings.MARKET_DATA_DIR)
                source = f"day files under `{root}`"
            try:
                given = {
                    "days": o["days"],
                    "horizon_s": o["horizon"],
                    "window": o["window"],
                    "epochs": o["epochs"],
                    "n_splits": o["splits"],
                    "seed": o["seed"],
                    "device": o["device"],
                    "backtest_threshold": None if o["threshold_pct"] is None else o["threshold_pct"] / 100.0,
                }
                params = TrainParams.from_dict(
                    {
                        "market": market,
                        "data_dir": root,
                        **{k: v for k, v in given.items() if v is not None},
                        **({"feature_levels": 7} if o["sample"] else {}),  # the sample CSV has 7 levels
                        "spikes": False,
                    }
                )
                days = training_days(params)
                if not days:
                    raise CommandError(f"no order-book day files for {market} under {root}")
                t0 = time.perf_counter()
                data = market_data_load(root=params.root, market=market, days=days, params=params)
                t_feat = time.perf_counter() - t0
                self.stdout.write(
                    f"features: {len(data.labelled)} snapshots x {data.labelled.frame.X.shape[1]} "
                    f"columns in {t_feat:.2f} s; training ..."
                )
                t1 = time.perf_counter()
                result = pipeline_run(params=params, data=data, progress=self._progress)
                t_run = time.perf_counter() - t1
                self.null: PipelineResult | None = None
                if o["null_control"]:
                    self.stdout.write("null-label control: the same pipeline on shuffled labels ...")
                    null_data = MarketData(
                        book=data.book,
                        labelled=shuffled_labels(data.labelled, seed=NULL_SEED + params.seed),
                        days=data.days,
                        terms=data.terms,
                    )
                    self.null = pipeline_run(params=params, data=null_data, progress=None)
                self.sensitivity = self._sensitivity(params, days) if o["sensitivity"] else []
            except ApplicationError as exc:
                raise CommandError(str(exc.message)) from exc
        plot_dir = out.parent / (out.stem + "-plots")
        plot_dir.mkdir(parents=True, exist_ok=True)
        for name, png in result.plots.items():
            (plot_dir / f"{name}.png").write_bytes(png)
        out.write_text(
            self._markdown(params, source, data, result, plot_dir, out, t_feat, t_run), encoding="utf-8"
        )
        self.stdout.write(self.style.SUCCESS(f"wrote {out} and {len(result.plots)} plots in {plot_dir}"))
        self.stdout.write(result.report.get("verdict", ""))

    def _sensitivity(self, params: TrainParams, days: list[dt.date]) -> list[dict[str, Any]]:
        """Baselines only (fast) at several horizons, backtested with threshold 0 and with the threshold."""

        fee = float(settings.UPBIT_FEE_RATE)
        spread_k = conf.spread_cost_factor()
        rows: list[dict[str, Any]] = []
        for horizon in sorted({10.0, 30.0, 60.0, 120.0, params.horizon_s}):
            p = TrainParams.from_dict({**params.to_dict(), "horizon_s": horizon})
            data = market_data_load(root=p.root, market=p.market, days=days, params=p)
            fee = data.terms.fee(float(settings.UPBIT_FEE_RATE))  # an imported dataset's own fee rate
            splits = walk_forward_splits_by_rows(data.labelled.frame.ts, n_splits=p.n_splits)
            y = data.labelled.y
            fin = np.isfinite(y)
            cost = decision_costs(
                data.book, np.nonzero(fin)[0], BacktestConfig(fee_rate=fee, spread_cost_factor=spread_k)
            )
            beyond = float(np.mean(np.abs(y[fin]) > cost)) if fin.any() else 0.0
            by_threshold = {}
            for thr in (0.0, p.backtest_threshold):
                bt = BacktestConfig(
                    threshold=thr,
                    fee_rate=fee,
                    order_krw=p.backtest_order_krw,
                    latency_ms=p.backtest_latency_ms,
                    spread_cost_factor=spread_k,
                    horizon_s=horizon,
                )
                cfg = EvalConfig(window=p.window, move_threshold=2 * fee, backtest=bt)
                factories: dict[str, ModelFactory] = {
                    "persistence": lambda ctx: ZeroReturn(),
                    "linear_ofi": lambda ctx: LinearOFI(ctx.feature_names),
                    "gbt": functools.partial(_tree, seed=p.seed),
                }
                report, _ = walk_forward_evaluate(data.labelled, data.book, splits, factories, config=cfg)
                by_threshold[thr] = report["summary"]
            s0, s1 = by_threshold[0.0], by_threshold[p.backtest_threshold]
            base = s0.get("persistence", {}).get("val", {}).get("mse")
            for name in ("linear_ofi", "gbt"):
                if name not in s0:
                    continue
                mse = s0[name]["val"].get("mse")
                rows.append(
                    {
                        "horizon": horizon,
                        "model": name,
                        "mse_gain": (base - mse) / base if base and mse is not None else None,
                        "dir_acc": s0[name]["test"].get("dir_acc"),
                        "beyond_cost": beyond,
                        "pnl0": s0[name]["backtest"]["net_pnl"],
                        "trips0": s0[name]["backtest"]["n_round_trips"],
                        "pnl": s1[name]["backtest"]["net_pnl"],
                    }
                )
            self.stdout.write(f"  sensitivity: horizon {horizon:g} s done")
        return rows

    def _progress(self, d: dict[str, Any]) -> None:
        if "epoch" in d and d["epoch"] % 5 == 0:
            self.stdout.write(
                f"  {d.get('stage', '')} epoch {d['epoch']} train {d['train_loss']:.4f} "
                f"val {d['val_loss']:.4f}"
            )

    def _markdown(
        self,
        params: TrainParams,
        source: str,
        data: MarketData,
        result: PipelineResult,
        plot_dir: Path,
        out: Path,
        t_feat: float,
        t_run: float,
    ) -> str:
        frame, y = data.labelled.frame, data.labelled.y
        book = data.book
        fee = float(settings.UPBIT_FEE_RATE)
        a1, b1 = book.ask_px[:, 0], book.bid_px[:, 0]
        mid = (a1 + b1) / 2
        rel_spread = (a1 - b1) / mid
        same_mid = float(np.mean(mid[1:] == mid[:-1])) if len(mid) > 1 else 0.0
        fin = np.isfinite(y)
        moves = float(np.mean(np.abs(y[fin]) > 2 * fee)) if fin.any() else 0.0
        spread_k = conf.spread_cost_factor()
        cost = 2 * fee + spread_k * float(np.nanmedian(rel_spread))
        edge = params.backtest_threshold + cost
        beyond_edge = float(np.mean(np.abs(y[fin]) > edge)) if fin.any() else 0.0
        start = dt.datetime.fromtimestamp(int(frame.ts[0]) / 1000, tz=dt.UTC)
        end = dt.datetime.fromtimestamp(int(frame.ts[-1]) / 1000, tz=dt.UTC)
        summary = result.eval_report["summary"]
        L: list[str] = []
        L.append(f"# ML pipeline on {params.market}: walk-forward report\n")
        L.append(
            f"Generated by `{_command_line()}` on "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Data: {source}.\n"
        )
        L += settings_section(params, result.eval_report, result.report, source=source, null=self.null)
        L.append("## Verdict\n")
        L.append(result.report.get("verdict", "") + "\n")
        L.append(signal_words(summary, self.null.eval_report["summary"] if self.null else None) + "\n")
        lstm, base = summary.get("lstm", {}), summary.get("persistence", {})
        L.append(self._verdict_words(lstm, base, summary, moves, beyond_edge, edge) + "\n")
        L += self._gate_section(result.report)
        L.append("## Data\n")
        L.append(
            f"- {len(frame):,} order-book snapshots, {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC, "
            f"{int(frame.segment.max()) + 1} continuous segment(s) (gaps split them; no feature or label "
            f"crosses a gap), {book.levels} levels per side."
        )
        L.append(
            f"- Median snapshot spacing {np.median(np.diff(frame.ts)) / 1000:.2f} s; mid unchanged between "
            f"consecutive snapshots {same_mid:.1%} of the time."
        )
        L.append(
            f"- Median relative spread {np.nanmedian(rel_spread) * 1e4:.1f} bps (Upbit fee {fee * 1e4:.1f} "
            f"bps per side): a round trip costs about {cost * 1e4:.1f} bps before any price move."
        )
        L.append(
            f"- Label: mid log-return {params.horizon_s:g} s ahead; {fin.mean():.1%} of snapshots have one; "
            f"|return| > both fees ({2 * fee * 1e4:.0f} bps) in {moves:.1%} of them, and > threshold + cost "
            f"({edge * 1e4:.1f} bps) in {beyond_edge:.1%}."
        )
        L.append(
            f"- Features ({len(frame.names)} columns, version `{frame.version}`): spread, microprice, "
            "level-wise relative prices and log sizes, depth imbalance at several depths, "
            "Cont–Kukanov–Stoikov "
            "order-flow imbalance and signed trade flow over 1/5/30 s, realised volatility, past returns. "
            "Each row uses only data at or before its snapshot (trades joined by `ts <= t`, never nearest)."
        )
        L.append(
            f"- Featurised in {t_feat:.2f} s; training and evaluating every model on every split took "
            f"{t_run:.1f} s ({result.bundle.meta.get('device', 'cpu')}).\n"
        )
        L.append("## Method\n")
        L.append(
            f"{params.n_splits} rolling walk-forward splits by rows (train : validation : test = 3 : 1 : 1, "
            "test blocks adjacent and disjoint). Per split, normalisation statistics are fitted on the "
            "training rows only; the LSTM (window "
            f"{params.window}, hidden {params.hidden}, ≤ {params.epochs} epochs, seed "
            f"{params.seed}) early-stops "
            "on the validation period and keeps its best weights; the baselines (persistence = zero return, "
            "ridge on OFI + depth imbalance, gradient-boosted trees) are fitted on the same rows. A training "
            "label never reaches into the validation period. The test period of each split is "
            "opened once per "
            "model, for the metrics and the backtest below.\n"
        )
        L.append(
            f"Backtest: the auto-trading rule (buy {params.backtest_order_krw:,.0f} KRW when the "
            "prediction > "
            f"threshold {params.backtest_threshold * 100:.3f}% + both fees + {_spread_words(spread_k)}; sell "
            "the position when "
            f"it is < −(threshold + cost)); orders arrive {params.backtest_latency_ms} ms later and walk the "
            "recorded book (market orders pay the spread), fees on both sides, 5,000 KRW "
            "minimum, 5 s cool-down, "
            "one position at a time, flat at the end of each test period.\n"
        )
        L.append("## Results (pooled over the test periods)\n")
        L += class_table(summary, title="")
        L.append(
            "| model | val. MSE | beats persistence (val.) | test MSE | test corr. | dir. acc. "
            "(moves > fee) | "
            "F1 (moves) | net P&L (KRW) | round trips | fees (KRW) | max DD (KRW) | buy & hold (KRW) |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in [n for n in MODEL_ORDER if n in summary] + [n for n in summary if n not in MODEL_ORDER]:
            s = summary[name]
            val, test, bt = s.get("val", {}), s.get("test", {}), s.get("backtest", {})
            beats = (
                "–"
                if name == "persistence"
                else ("yes" if s.get("beats_persistence_on_validation") else "no")
            )
            L.append(
                f"| {name} | {_f(val.get('mse'), '.3e')} | {beats} | {_f(test.get('mse'), '.3e')} | "
                f"{_f(test.get('corr'), '.3f')} | {_f(test.get('dir_acc'), '.3f')} | "
                f"{_f(test.get('f1_moves'), '.3f')} | {_f(bt.get('net_pnl'), ',.0f')} | "
                f"{_f(bt.get('n_round_trips'), '.0f')} | {_f(bt.get('fees'), ',.0f')} | "
                f"{_f(bt.get('max_drawdown'), ',.0f')} | {_f(bt.get('buy_hold_pnl'), ',.0f')} |"
            )
        L.append("")
        L.append("### Per split\n")
        L.append(
            "| split | samples train/val/test | model | val. MSE | test MSE | moves > fee | dir. acc. | "
            "tradeable moves | macro-F1 [90% CI] | MCC [90% CI] | net P&L | trades |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for sp in result.eval_report["splits"]:
            if sp.get("skipped"):
                L.append(
                    f"| {sp['split']['index'] + 1} | {sp['samples']} | – | skipped: {sp['skipped']} "
                    "| | | | | | | | |"
                )
                continue
            smp = sp["samples"]
            for name, m in sp["models"].items():
                t, ci = m["test"], m["test"].get("ci") or {}
                L.append(
                    f"| {sp['split']['index'] + 1} | {smp['train']}/{smp['val']}/{smp['test']} | {name} | "
                    f"{_f(m['val'].get('mse'), '.3e')} | {_f(t.get('mse'), '.3e')} | "
                    f"{_f(t.get('moves'), '.0f')} | {_f(t.get('dir_acc'), '.3f')} | "
                    f"{_f(t.get('tradeable'), '.0f')} | {_ci(t.get('macro_f1'), ci.get('macro_f1'))} | "
                    f"{_ci(t.get('mcc'), ci.get('mcc'))} | {_f(m['backtest'].get('net_pnl'), ',.0f')} | "
                    f"{_f(m['backtest'].get('n_fills'), '.0f')} |"
                )
        L.append("")
        if self.null is not None:
            L += null_section(self.null)
        L.append("### Calibration of the LSTM (test periods, deciles of the prediction)\n")
        L.append("| mean predicted (bps) | mean realised (bps) | n |")
        L.append("|---|---|---|")
        for c in result.report.get("calibration", []):
            L.append(
                f"| {_f((c.get('pred_mean') or 0) * 1e4, '+.2f')} | "
                f"{_f((c.get('real_mean') or 0) * 1e4, '+.2f')}"
                f" | {_f(c.get('n'), '.0f')} |"
            )
        L.append("")
        if self.sensitivity:
            L.append("### Sensitivity: horizon and threshold (baselines only, same walk-forward splits)\n")
            L.append(
                "Is there tradeable signal at another horizon or with no profit threshold at all? The cheap "
                "baselines are re-run for each horizon; the backtest uses threshold 0 (cost only) and the "
                "given "
                "threshold."
            )
            L.append("")
            L.append(
                "| horizon (s) | model | val. MSE gain over persistence | test dir. acc. | moves > cost | "
                "net P&L, threshold 0 (KRW) | round trips | net P&L, threshold (KRW) |"
            )
            L.append("|---|---|---|---|---|---|---|---|")
            for row in self.sensitivity:
                L.append(
                    f"| {row['horizon']:g} | {row['model']} | {_f(row['mse_gain'], '+.1%')} | "
                    f"{_f(row['dir_acc'], '.3f')} | {_f(row['beyond_cost'], '.1%')} | "
                    f"{_f(row['pnl0'], ',.0f')} | "
                    f"{_f(row['trips0'], '.0f')} | {_f(row['pnl'], ',.0f')} |"
                )
            L.append("")
        L.append("## Plots\n")
        rel = plot_dir.relative_to(out.parent) if plot_dir.is_relative_to(out.parent) else plot_dir
        for name in sorted(result.plots):
            L.append(f"![{name}]({rel}/{name}.png)")
        L.append("")
        L.append("## Caveats\n")
        L.append(
            "- The sample is small (two stretches of ~1.5–2 h, 7 levels, 1–2 s snapshots, "
            "trades inferred from "
            "the last-trade columns by the tick rule) and from 2018: it shows the pipeline runs on real data "
            "and what the model finds there; it does not show a model would earn money today."
            if "sample" in source
            else (
                "- The simulator's synthetic market with a planted signal (announced jumps, "
                "docs/simulator.md): a model that passes here has learned the planted signal; it says the "
                "pipeline and the gate can find signal where there is some, not that a real market offers it."
                if "synthetic" in source
                else "- Results on recorded data do not promise future profits."
            )
        )
        L.append(
            "- The persistence bar is strict: with a one-tick spread far above the fee, most snapshots carry "
            "no move at all, so a small MSE gain does not mean tradeable signal; the backtest, "
            "which pays the "
            "spread and both fees, is the number that matters for auto-trading."
        )
        L.append(
            "- The trading rule counts both fees plus *half* the spread as the cost of a round trip (as the "
            "product specifies). Measured from the mid, a market round trip pays half the spread on entry "
            "and half on exit, i.e. the full spread: on a market whose spread is one wide tick the rule is "
            "therefore optimistic and may enter trades that cannot pay. The backtest fills at the recorded "
            "book, so its P&L includes the full spread and both fees."
        )
        L.append(
            "- Promotion in production follows the same gate (mlmodel/gate.py) as the table above: nightly "
            "retraining, Train now, `train --promote-if-better` and the first-model bootstrap promote the "
            "LSTM only if it passes; otherwise the active model (or none) stays."
        )
        return "\n".join(L) + "\n"

    @staticmethod
    def _gate_section(report: dict[str, Any]) -> list[str]:
        """Which model would have passed the promotion gate, with the p-values and the HAC lag."""
        gate, cfg = report.get("gate") or {}, report.get("gate_config") or {}
        if not gate:
            return []
        L = ["## Promotion gate\n"]
        L.append(
            f"One-sided Diebold-Mariano tests on the test periods' squared errors (Newey-West variance, lag "
            f"{cfg.get('label_overlap_rows', '?')} rows at least: the label overlap), alpha "
            f"{cfg.get('alpha', '?')}; net P&L after both fees, the full spread and latency > 0 over at "
            f"least {cfg.get('min_round_trips', '?')} round trips; the LSTM also "
            "against the active model and the live feed.\n"
        )
        L.append(
            "| model | passes | p vs persistence | p vs best baseline | lag | round trips | net P&L | why |"
        )
        L.append("|---|---|---|---|---|---|---|---|")
        for name in (*MODEL_ORDER, *sorted(set(gate) - set(MODEL_ORDER))):
            g = gate.get(name)
            if not g:
                continue
            comps = {c["against"]: c for c in g.get("comparisons", [])}
            p_pers = comps.get("persistence", {}).get("p_value")
            others = [c for a, c in comps.items() if a != "persistence"]
            p_best = f"{others[0]['against']} {_f(others[0]['p_value'], '.2g')}" if others else "–"
            lag = max((int(c.get("lag") or 0) for c in comps.values()), default=0)
            L.append(
                f"| {name} | {'yes' if g.get('passed') else 'no'} | {_f(p_pers, '.2g')} | {p_best} | {lag} | "
                f"{g.get('round_trips', 0)} | {_f(g.get('net_pnl'), ',.0f')} | {g.get('reason', '')} |"
            )
        return [*L, ""]

    @staticmethod
    def _verdict_words(
        lstm: dict[str, Any],
        base: dict[str, Any],
        summary: dict[str, Any],
        moves: float,
        beyond_edge: float,
        edge: float,
    ) -> str:
        parts = []
        vm, bm = lstm.get("val", {}).get("mse"), base.get("val", {}).get("mse")
        if vm is not None and bm is not None and bm:
            gain = (1 - vm / bm) * 100
            where = "below" if gain > 0 else "above"
            parts.append(
                f"On validation the LSTM's MSE is {abs(gain):.1f}% {where} persistence (the 'price stays the "
                "same' baseline the original prototype never checked)."
            )
        beaters = [
            n for n, s in summary.items() if n != "persistence" and s.get("beats_persistence_on_validation")
        ]
        if beaters:
            parts.append(f"Models that beat persistence on validation: {', '.join(beaters)}.")
        by_val = sorted(
            (
                (n, s.get("val", {}).get("mse"))
                for n, s in summary.items()
                if s.get("val", {}).get("mse") is not None
            ),
            key=lambda t: t[1],
        )
        if by_val:
            best_val = by_val[0][0]
            parts.append(
                f"Lowest validation MSE: {best_val}"
                + ("." if best_val == "lstm" else " - the LSTM is not the best model on this data.")
            )
        else:
            parts.append("No model beats persistence on validation.")
        pnl = lstm.get("backtest", {}).get("net_pnl")
        if pnl is not None:
            trips = lstm.get("backtest", {}).get("n_round_trips", 0)
            parts.append(
                "Trading its predictions with the auto-trading rule on the test periods gives "
                f"{pnl:,.0f} KRW "
                f"net over {trips:.0f} round trips."
            )
        best = max(
            ((n, s.get("backtest", {}).get("net_pnl", 0.0)) for n, s in summary.items()),
            key=lambda t: t[1],
            default=("", 0.0),
        )
        if best[0]:
            parts.append(f"Best net P&L among all models: {best[0]} ({best[1]:,.0f} KRW).")
        if beyond_edge < 0.05:
            parts.append(
                f"Only {beyond_edge:.1%} of the horizon's moves exceed threshold + cost "
                f"({edge * 1e4:.1f} bps): there is little a fee-paying strategy can capture here."
            )
        return " ".join(parts)


def _command_line() -> str:
    """The command as it was typed (from a shell), else its name."""
    argv = sys.argv
    if len(argv) > 1 and argv[0].endswith("manage.py") and argv[1] == "ml_report":
        return " ".join(["manage.py", *argv[1:]])
    return "manage.py ml_report"


def _ci(value: Any, ci: Any) -> str:
    """``0.123 [0.101, 0.150]``; "–" for a missing value (no samples, or no moves)."""
    v = _f(value, ".3f")
    if v == "–" or not ci or len(ci) != 2:
        return v
    return f"{v} [{_f(ci[0], '.3f')}, {_f(ci[1], '.3f')}]"


def settings_section(
    params: TrainParams,
    eval_report: dict[str, Any],
    report: dict[str, Any],
    *,
    source: str,
    null: PipelineResult | None,
) -> list[str]:
    """Every setting the report was made with: the training config, the evaluation's labels, dead band and
    bootstrap, the backtest and the gate, so the figures can be reproduced and compared."""
    cfg = eval_report.get("config", {})
    bt, boot, gate = cfg.get("backtest", {}), cfg.get("bootstrap", {}), report.get("gate_config") or {}
    fee = float(bt.get("fee_rate", settings.UPBIT_FEE_RATE))
    block = boot.get("block_rows") or f"max(label overlap, n^(1/3)) = {_block_rows(eval_report)}"
    rows = [
        ("data", source),
        ("market", params.market),
        ("days (last N)", params.days),
        ("horizon", f"{params.horizon_s:g} s ({cfg.get('label_overlap_rows', '?')} rows of label overlap)"),
        ("window", f"{params.window} snapshots"),
        ("feature levels", params.feature_levels),
        (
            "LSTM",
            f"hidden {params.hidden}, layers {params.layers}, dropout {params.dropout:g}, ≤ {params.epochs} "
            f"epochs, patience {params.patience}, batch {params.batch_size}, lr {params.lr:g}, seed "
            f"{params.seed}, ≤ {params.max_samples_per_epoch:,} samples per epoch",
        ),
        ("baselines", ", ".join(["persistence", *params.baselines])),
        (
            "walk-forward",
            f"{params.n_splits} splits by rows, train : val : test = 3 : 1 : 1, train stride "
            f"{params.train_stride}, eval stride {params.eval_stride}",
        ),
        ("fee", f"{fee * 100:.3f}% per side"),
        (
            "3-class labels",
            f"down / flat / up; flat = |return| ≤ threshold {params.backtest_threshold * 100:.3f}% + "
            f"both fees {2 * fee * 100:.2f}% + {_spread_words(float(bt.get('spread_cost_factor', 0.5)))} at "
            f"that "
            "snapshot",
        ),
        ("moves (dir. acc.)", f"|return| > both fees ({2 * fee * 100:.2f}%); no moves = –, not 0"),
        (
            "bootstrap",
            f"circular block bootstrap within each test period, {boot.get('samples', '?')} draws, block "
            f"{block} rows, seed {boot.get('seed', '?')}, {float(boot.get('level', 0.9)):.0%} percentile "
            "intervals",
        ),
        (
            "backtest",
            f"{params.backtest_order_krw:,.0f} KRW per buy, latency {params.backtest_latency_ms} ms, "
            f"cool-down {int(bt.get('cooldown_ms', 0)) / 1000:g} s, minimum {bt.get('min_total_krw', 0):,.0f}"
            " KRW, market orders on the recorded book",
        ),
        (
            "gate",
            f"alpha {gate.get('alpha', params.gate_alpha)}, "
            f"≥ {gate.get('min_round_trips', params.gate_min_round_trips)} round trips, HAC lag ≥ "
            f"{gate.get('label_overlap_rows', '?')} rows; test periods ≥ "
            f"{params.min_test_samples} samples",
        ),
        ("device", params.device),
        (
            "null-label control",
            f"the same pipeline on labels permuted at random (seed {NULL_SEED + params.seed})"
            if null is not None
            else "not run (--no-null-control)",
        ),
    ]
    L = ["## Settings\n", "| setting | value |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in rows]
    return [*L, ""]


def _block_rows(eval_report: dict[str, Any]) -> str:
    blocks = sorted(
        {
            int(ci["block_rows"])
            for s in eval_report.get("summary", {}).values()
            if (ci := s.get("test", {}).get("ci")) and ci.get("block_rows")
        }
    )
    return ", ".join(str(b) for b in blocks) or "?"


def class_table(summary: dict[str, Any], *, title: str) -> list[str]:
    """Is there signal? 3-class macro-F1 and MCC on the pooled test samples with their intervals, the moves
    and the tradeable moves, directional accuracy over the samples that moved."""
    L = [title] if title else []
    L.append(
        "| model | test samples | moves > fee | dir. acc. (moves) | tradeable moves | macro-F1 [90% CI] | "
        "MCC [90% CI] | net P&L (KRW) | round trips |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name in [n for n in MODEL_ORDER if n in summary] + [n for n in summary if n not in MODEL_ORDER]:
        t, bt = summary[name].get("test", {}), summary[name].get("backtest", {})
        ci = t.get("ci") or {}
        L.append(
            f"| {name} | {_f(t.get('n'), ',.0f')} | {_f(t.get('moves'), ',.0f')} | "
            f"{_f(t.get('dir_acc'), '.3f')} | {_f(t.get('tradeable'), ',.0f')} | "
            f"{_ci(t.get('macro_f1'), ci.get('macro_f1'))} | "
            f"{_ci(t.get('mcc'), ci.get('mcc'))} | {_f(bt.get('net_pnl'), ',.0f')} | "
            f"{_f(bt.get('n_round_trips'), '.0f')} |"
        )
    return [*L, ""]


def null_section(null: PipelineResult) -> list[str]:
    """The null-label control beside the real run: what the same pipeline reports on shuffled labels."""
    L = [
        "### Null-label control (the same pipeline on shuffled labels)\n",
        "The labels are permuted at random, everything else (features, splits, models, backtest on the "
        "recorded book) is unchanged. A model whose real MCC interval overlaps this one's has shown no "
        "signal.\n",
    ]
    L += class_table(null.eval_report["summary"], title="")
    gate = null.report.get("gate") or {}
    passed = [n for n, g in gate.items() if g.get("passed")]
    L.append(
        "Promotion gate on the shuffled labels: "
        + (
            f"**passed by {', '.join(passed)}** (the gate should refuse these)."
            if passed
            else "no model passed."
        )
    )
    return [*L, ""]


def signal_words(summary: dict[str, Any], null_summary: dict[str, Any] | None) -> str:
    """One sentence per model that found signal: MCC interval above 0 and above the null control's."""
    found: list[str] = []
    none: list[str] = []
    for name in [n for n in MODEL_ORDER if n in summary and n != "persistence"]:
        t = summary[name].get("test", {})
        lo = ((t.get("ci") or {}).get("mcc") or [math.nan])[0]
        null_hi = math.nan
        if null_summary and name in null_summary:
            null_hi = (
                (null_summary[name].get("test", {}).get("ci") or {}).get("mcc") or [math.nan, math.nan]
            )[1]
        ok = (
            lo is not None
            and math.isfinite(lo)
            and lo > 0
            and not (null_hi is not None and math.isfinite(null_hi) and lo <= null_hi)
        )
        (found if ok else none).append(f"{name} (MCC {_ci(t.get('mcc'), (t.get('ci') or {}).get('mcc'))})")
    words = []
    if found:
        words.append(
            "Signal beyond the cost dead band: "
            + ", ".join(found)
            + " - the MCC interval is above 0"
            + (" and above the null-label control's." if null_summary else ".")
        )
    if none:
        words.append("No signal shown by: " + ", ".join(none) + ".")
    return "Is there signal? " + " ".join(words)


def _spread_words(k: float) -> str:
    if k == 0.5:
        return "half-spread"
    if k == 1.0:
        return "the full spread"
    return f"{k:g} x the spread"


def _tree(ctx: Any, *, seed: int) -> Any:
    return TreeModel(seed=seed)
