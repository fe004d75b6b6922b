"""Training: one walk-forward run over the data (the LSTM, the baselines and the active model scored on the
same test periods, the promotion gate, the report and its plots) and a trained candidate stored as a new
model version. Imports torch, scikit-learn and matplotlib: only what trains imports it."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from mlmodel import conf, gate
from mlmodel.backtest import BacktestConfig
from mlmodel.baselines import LinearOFI, TreeModel, ZeroReturn
from mlmodel.evaluation import (
    EvalConfig,
    Split,
    SplitContext,
    walk_forward_evaluate,
    walk_forward_splits_by_rows,
)
from mlmodel.gate import GateConfig, LiveFit, gate_all, gate_decide
from mlmodel.models import ModelVersion
from mlmodel.report import build_report, json_safe, render_plots
from mlmodel.services.data import (
    MarketData,
    market_data_load,
    older_spikes_load,
    spike_periods_store,
    training_days_select,
)
from mlmodel.services.params import ProgressFn, TrainingFailed, TrainParams
from mlmodel.services.registry import model_version_create
from mlmodel.training import FrozenModel, TrainConfig, load_artifact, lstm_factory, save_artifact


@dataclass
class TrainResult:
    version: ModelVersion
    report: dict[str, Any]


def _progress_adapter(params: TrainParams, progress: ProgressFn | None) -> tuple[Any, Any]:
    state: dict[str, Any] = {
        "split": 0,
        "n_splits": params.n_splits,
        "model": "",
        "epoch_times": [],
        "last": time.monotonic(),
    }

    def on_event(ev: dict[str, Any]) -> None:
        state.update(
            split=int(ev.get("split", 0)),
            n_splits=int(ev.get("n_splits", params.n_splits)),
            model=str(ev.get("model", "")),
        )
        state["last"] = time.monotonic()
        if progress:
            progress(
                {
                    "stage": f"split {state['split'] + 1}/{state['n_splits']}: fitting {state['model']}",
                    "split": state["split"] + 1,
                    "total_splits": state["n_splits"],
                }
            )

    def on_epoch(epoch: int, train_loss: float, val_loss: float, eta_s: float) -> None:
        now = time.monotonic()
        state["epoch_times"].append(now - state["last"])
        state["last"] = now
        remaining_splits = max(state["n_splits"] - state["split"] - 1, 0)
        per_epoch = float(np.mean(state["epoch_times"]))
        eta = eta_s + remaining_splits * params.epochs * per_epoch  # upper bound: early stopping shortens it
        if progress:
            progress(
                {
                    "stage": f"split {state['split'] + 1}/{state['n_splits']}: training lstm",
                    "split": state["split"] + 1,
                    "total_splits": state["n_splits"],
                    "epoch": epoch,
                    "total_epochs": params.epochs,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "eta_seconds": eta,
                }
            )

    return on_event, on_epoch


def _load_bundle(version: ModelVersion) -> Any:
    with version.artifact.open("rb") as fh:
        return load_artifact(fh.read())


@dataclass
class PipelineResult:
    """Everything one walk-forward run produced (nothing stored yet)."""

    eval_report: dict[str, Any]
    outcomes: dict[int, dict[str, Any]]
    report: dict[str, Any]
    plots: dict[str, bytes]
    bundle: Any  # mlmodel.training.ModelBundle of the last split's LSTM
    train_config: Any
    metrics: dict[str, Any]


def train_config_of(params: TrainParams) -> TrainConfig:
    """The LSTM's training configuration of ``params``."""
    return TrainConfig(
        window=params.window,
        hidden=params.hidden,
        layers=params.layers,
        dropout=params.dropout,
        lr=params.lr,
        batch_size=params.batch_size,
        max_epochs=params.epochs,
        patience=params.patience,
        seed=params.seed,
        device=params.device,
        max_samples_per_epoch=params.max_samples_per_epoch,
    )


def pipeline_run(
    *,
    params: TrainParams,
    data: MarketData,
    extra: Any = None,
    spikes_used: Sequence[tuple[int, int]] = (),
    incumbent: ModelVersion | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    splits: list[Split] | None = None,
    lstm: Callable[[SplitContext], Any] | None = None,
) -> PipelineResult:
    """Walk-forward splits over ``data``, the LSTM and the baselines (and ``incumbent`` frozen, when given)
    scored on the same test periods, the report and its plots. Stores nothing. A pooled model's market
    passes the pooled run's common ``splits`` and ``lstm``: its trained per-split models seen from this
    market (``mlmodel.services.pooled``); the gate is then this market's, on its own test periods."""

    emit = progress or (lambda _d: None)
    if splits is None:
        try:
            splits = walk_forward_splits_by_rows(data.labelled.frame.ts, n_splits=params.n_splits)
        except ValueError as exc:
            raise TrainingFailed(
                _("Not enough data for %(n)s walk-forward splits.") % {"n": params.n_splits}
            ) from exc
    train_cfg = train_config_of(params)
    fee = float(settings.UPBIT_FEE_RATE)
    if data.terms is not None:
        fee = data.terms.fee(fee)  # an imported dataset's own fee rate (import_book --fee-rate)
    bt_cfg = BacktestConfig(
        threshold=params.backtest_threshold,
        fee_rate=fee,
        order_krw=params.backtest_order_krw,
        latency_ms=params.backtest_latency_ms,
        min_total_krw=float(settings.UPBIT_MIN_ORDER_KRW),
        spread_cost_factor=conf.spread_cost_factor(),
        horizon_s=params.horizon_s,  # the product's exit rule: sold after the horizon (mlmodel.rule)
    )
    eval_cfg = EvalConfig(
        window=params.window,
        train_stride=params.train_stride,
        eval_stride=params.eval_stride,
        move_threshold=2 * fee,
        backtest=bt_cfg,
        max_eval_windows=params.max_eval_windows,
    )
    on_event, on_epoch = _progress_adapter(params, progress)
    factories: dict[str, Any] = {"persistence": lambda ctx: ZeroReturn()}
    if "linear_ofi" in params.baselines:
        factories["linear_ofi"] = lambda ctx: LinearOFI(ctx.feature_names)
    if "gbt" in params.baselines:
        factories["gbt"] = lambda ctx: TreeModel(seed=params.seed)
    factories["lstm"] = lstm or lstm_factory(train_cfg, progress=on_epoch, should_stop=should_stop)
    incumbent_note = ""
    if incumbent is not None:
        inc_bundle = _load_bundle(incumbent)
        if tuple(inc_bundle.feature_names) != tuple(data.labelled.frame.names):
            incumbent_note = "active model uses different features; it cannot be scored on the same test"
        elif inc_bundle.window > params.window:
            incumbent_note = f"active model needs windows of {inc_bundle.window} rows (> {params.window})"
        elif abs(inc_bundle.horizon_s - params.horizon_s) > 1e-9:
            incumbent_note = "active model predicts a different horizon"
        elif inc_bundle.pooled and params.market not in inc_bundle.markets:
            incumbent_note = "active pooled model was not trained on this market"
        else:
            factories["incumbent"] = lambda ctx: FrozenModel(ctx, inc_bundle, market=params.market)
    torch_threads = torch.get_num_threads()
    eval_report, outcomes = walk_forward_evaluate(
        data.labelled, data.book, splits, factories, config=eval_cfg, extra_train=extra, on_event=on_event
    )
    torch.set_num_threads(torch_threads)
    last = [k for k in sorted(outcomes) if "lstm" in outcomes[k]]
    if not last:
        raise TrainingFailed(_("No walk-forward split had enough labelled windows to train on."))
    _test_sizes_check(eval_report, minimum=params.min_test_samples)
    bundle = outcomes[last[-1]]["lstm"].fitted.bundle
    emit({"stage": "writing report"})
    frame = data.labelled.frame
    data_info = {
        "market": params.market,
        "days": [d.isoformat() for d in data.days],
        "requested_days": [d.isoformat() for d in data.requested],
        "missing_days": {d.isoformat(): why for d, why in sorted(data.missing.items())},
        "fetched_days": [d.isoformat() for d in data.fetched],
        "rows": len(frame),
        "start_ms": int(frame.ts[0]),
        "end_ms": int(frame.ts[-1]),
        "spike_periods": [list(p) for p in spikes_used],
        "spike_rows": len(extra) if extra is not None else 0,
        "incumbent": incumbent.label if incumbent is not None else None,
        "incumbent_note": incumbent_note,
    }
    training_info = {"history": bundle.history, "best_epoch": bundle.best_epoch, **bundle.meta}
    report = build_report(eval_report, outcomes, model="lstm", data=data_info, training=training_info)
    _gate_apply(report, outcomes, params=params, frame=frame, has_incumbent="incumbent" in factories)
    plots = render_plots(outcomes, model="lstm")
    summary = eval_report["summary"]
    metrics = json_safe(
        {
            "lstm": summary.get("lstm", {}),
            "baselines": {k: v for k, v in summary.items() if k not in ("lstm", "incumbent")},
            "incumbent": summary.get("incumbent"),
            "promotable": bool(report.get("promotable")),
        }
    )
    return PipelineResult(
        eval_report=eval_report,
        outcomes=outcomes,
        report=report,
        plots=plots,
        bundle=bundle,
        train_config=train_cfg,
        metrics=metrics,
    )


def _test_sizes_check(eval_report: dict[str, Any], *, minimum: int) -> None:
    """A test period with fewer labelled samples than ``minimum`` gives a figure of noise: fail with the
    numbers instead (fewer splits, a shorter window or more days make them larger)."""
    sizes = [int(s.get("samples", {}).get("test", 0)) for s in eval_report.get("splits", [])]
    if sizes and min(sizes) < minimum:
        raise TrainingFailed(
            _(
                "Test periods too small: %(sizes)s labelled samples (at least %(min)s needed, "
                "ML_MIN_TEST_SAMPLES); use more days, fewer splits or a shorter window."
            )
            % {"sizes": ", ".join(str(n) for n in sizes), "min": minimum}
        )


def _gate_apply(
    report: dict[str, Any],
    outcomes: dict[int, dict[str, Any]],
    *,
    params: TrainParams,
    frame: Any,
    has_incumbent: bool,
) -> None:
    """Run the promotion gate (mlmodel/gate.py) for the LSTM (against the active model and the live feed)
    and, for the report, for every other model; the LSTM's result decides ``promotable``."""
    gate_cfg = GateConfig(
        alpha=params.gate_alpha, min_round_trips=params.gate_min_round_trips, baselines=gate.CHEAP_BASELINES
    )
    ts = np.asarray(frame.ts, dtype=np.int64)
    interval_s = float(np.median(np.diff(ts))) / 1000.0 if ts.size > 1 else 1.0
    overlap = int(math.ceil(params.horizon_s / interval_s)) if interval_s > 0 else 0
    live = LiveFit(
        model_levels=params.feature_levels,
        feed_levels=int(settings.MARKET_PREDICTION_LEVELS),
        window_rows=params.window,
        row_interval_s=interval_s,
        lookback_s=frame.config.lookback_ms / 1000.0,
        keep_s=float(conf.get("ML_LIVE_KEEP_S")),
    )
    results = gate_all(outcomes, config=gate_cfg, label_overlap_rows=overlap)
    results["lstm"] = gate_decide(
        outcomes,
        candidate="lstm",
        config=gate_cfg,
        incumbent="incumbent" if has_incumbent else None,
        label_overlap_rows=overlap,
        live=live,
    )
    lstm = results["lstm"]
    passed = [n for n, r in results.items() if r.passed]
    report["gate"] = json_safe({n: r.to_dict() for n, r in results.items()})
    report["gate_config"] = {**asdict(gate_cfg), "label_overlap_rows": overlap, "row_interval_s": interval_s}
    report["promotable"] = lstm.passed
    report["verdict"] = (
        f"{report.get('verdict', '')} Gate: {'passed' if lstm.passed else 'refused'} - {lstm.reason}."
        + (f" Would have passed: {', '.join(passed)}." if passed else " No model passed.")
    ).strip()


def model_train(
    *,
    params: TrainParams,
    incumbent: ModelVersion | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    name: str = "",
) -> TrainResult:
    """Train a candidate for ``params.market``: the last N days of day files (+ stored spike periods),
    walk-forward splits, the LSTM and the baselines (and ``incumbent`` frozen, when given) scored on the same
    test periods, the last split's LSTM stored as a new candidate version with its report and plots."""
    params.validate()
    emit = progress or (lambda _d: None)
    emit({"stage": "loading day files"})
    selection = training_days_select(params)
    days = selection.days
    if not days:
        raise TrainingFailed(
            _("No order-book day files for %(market)s under the data directory or in the archive.")
            % {"market": params.market}
        )
    data = market_data_load(root=params.root, market=params.market, days=days, params=params)
    data.requested, data.missing, data.fetched = selection.requested, selection.missing, selection.fetched
    spikes_used: list[tuple[int, int]] = []
    extra = None
    if params.spikes:
        emit({"stage": "spike/crash periods"})
        spike_periods_store(params=params, data=data)
        extra, spikes_used = older_spikes_load(params, int(data.labelled.frame.ts[0]))
    result = pipeline_run(
        params=params,
        data=data,
        extra=extra,
        spikes_used=spikes_used,
        incumbent=incumbent,
        progress=progress,
        should_stop=should_stop,
    )
    bundle = result.bundle
    frame = data.labelled.frame
    version = model_version_create(
        market=params.market,
        name=name or f"lstm-{params.market}",
        horizon_s=params.horizon_s,
        data_start=dt.datetime.fromtimestamp(int(frame.ts[0]) / 1000, tz=dt.UTC),
        data_end=dt.datetime.fromtimestamp(int(frame.ts[-1]) / 1000, tz=dt.UTC),
        data_days=[d.isoformat() for d in days],
        spike_periods=[list(p) for p in spikes_used],
        feature_names=list(bundle.feature_names),
        feature_version=bundle.feature_version,
        hyperparameters={
            **params.to_dict(),
            "train_config": result.train_config.to_dict(),
            "feature_config": bundle.feature_config.to_dict(),
        },
        metrics=result.metrics,
        report=result.report,
        artifact=save_artifact(bundle),
        plots=result.plots,
    )
    return TrainResult(version=version, report=result.report)
