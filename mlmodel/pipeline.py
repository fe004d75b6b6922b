"""One call for nightly training: walk-forward evaluation of the LSTM, the baselines and (optionally) the
active model on the same splits, the report with plots, and the artifact of the newest split's LSTM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from market.dayfiles import BookArrays
from mlmodel.baselines import LinearOFI, TreeModel, ZeroReturn
from mlmodel.dataset import LabelledFrame
from mlmodel.evaluation import (
    PERSISTENCE,
    EvalConfig,
    EventFn,
    ModelFactory,
    SplitContext,
    walk_forward_evaluate,
    walk_forward_splits_by_rows,
)
from mlmodel.gate import GateConfig, gate_decide
from mlmodel.report import build_report, json_safe, render_plots
from mlmodel.training import FrozenModel, LSTMModel, ModelBundle, ProgressFn, TrainConfig, save_artifact

INCUMBENT = "incumbent"


@dataclass(frozen=True)
class PipelineConfig:
    n_splits: int = 3
    train_ratio: float = 3.0
    val_ratio: float = 1.0
    test_ratio: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: tuple[str, ...] = (PERSISTENCE, "linear_ofi", "gbt")
    plot_format: str = "png"
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass
class PipelineResult:
    report: dict[str, Any]
    plots: dict[str, bytes]
    bundle: ModelBundle | None  # the LSTM of the newest split (trained on the most recent train/val periods)
    artifact: bytes | None
    promotable: bool  # passes the promotion gate (mlmodel/gate.py)
    beats_incumbent: bool  # passes it including "not worse than the incumbent on the same test periods"


def _baseline_factories(names: tuple[str, ...], seed: int) -> dict[str, ModelFactory]:
    known: dict[str, ModelFactory] = {
        PERSISTENCE: lambda ctx: ZeroReturn(),
        "linear_ofi": lambda ctx: LinearOFI(ctx.feature_names),
        "gbt": lambda ctx: TreeModel(seed=seed),
    }
    unknown = set(names) - set(known)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}")
    return {n: known[n] for n in names}


def run_pipeline(
    data: LabelledFrame,
    book: BookArrays,
    *,
    config: PipelineConfig | None = None,
    extra_train: LabelledFrame | None = None,
    incumbent: ModelBundle | None = None,
    progress: ProgressFn | None = None,
    on_event: EventFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_info: dict[str, Any] | None = None,
) -> PipelineResult:
    cfg = config or PipelineConfig()
    if cfg.train.window != cfg.eval.window:
        raise ValueError("train.window and eval.window must agree")
    splits = walk_forward_splits_by_rows(
        data.frame.ts,
        n_splits=cfg.n_splits,
        train_ratio=cfg.train_ratio,
        val_ratio=cfg.val_ratio,
        test_ratio=cfg.test_ratio,
    )
    factories = _baseline_factories(tuple(dict.fromkeys((PERSISTENCE, *cfg.baselines))), cfg.train.seed)

    def lstm(ctx: SplitContext) -> LSTMModel:
        def split_progress(epoch: int, train_loss: float, val_loss: float, eta: float) -> None:
            if progress is not None:
                progress(epoch, train_loss, val_loss, eta)
            if on_event is not None:
                on_event(
                    {
                        "stage": "epoch",
                        "split": ctx.split.index,
                        "n_splits": len(splits),
                        "epoch": epoch,
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                        "eta_s": eta,
                    }
                )

        return LSTMModel(ctx, cfg.train, progress=split_progress, should_stop=should_stop)

    factories["lstm"] = lstm
    if incumbent is not None:
        factories[INCUMBENT] = lambda ctx: FrozenModel(ctx, incumbent, name=INCUMBENT)
    eval_report, outcomes = walk_forward_evaluate(
        data, book, splits, factories, config=cfg.eval, extra_train=extra_train, on_event=on_event
    )
    bundle: ModelBundle | None = None
    if outcomes:
        last = outcomes[max(outcomes)]
        fitted = last["lstm"].fitted
        if isinstance(fitted, LSTMModel):
            bundle = fitted.bundle
    training: dict[str, Any] = {"config": cfg.train.to_dict()}
    if bundle is not None:
        training.update({"history": bundle.history, "best_epoch": bundle.best_epoch, "meta": bundle.meta})
    report = build_report(eval_report, outcomes, model="lstm", data=data_info, training=training)
    # The one promotion gate (mlmodel/gate.py), as nightly retraining applies it.
    gate = gate_decide(
        outcomes, candidate="lstm", config=cfg.gate, incumbent=INCUMBENT if incumbent is not None else None
    )
    report["gate"] = json_safe({"lstm": gate.to_dict()})
    report["promotable"] = gate.passed
    if incumbent is not None:
        report["beats_incumbent"] = gate.passed
    plots = render_plots(outcomes, model="lstm", fmt=cfg.plot_format) if outcomes else {}
    ok = bool(report["promotable"])
    better = bool(report.get("beats_incumbent", ok))
    return PipelineResult(
        report=report,
        plots=plots,
        bundle=bundle,
        artifact=save_artifact(bundle) if bundle is not None else None,
        promotable=ok,
        beats_incumbent=better,
    )
