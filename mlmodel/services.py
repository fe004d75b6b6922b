"""ML writes: training (day files -> features -> walk-forward LSTM + baselines -> stored version with its
report), the registry (promote / roll back / retire, exactly one active model per market), nightly retraining
with the promotion rule, and storing served predictions."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import realtime
from core.errors import Conflict, NotFound, ValidationFailed
from market import dayfiles
from mlmodel import conf
from mlmodel.config import training_config
from mlmodel.models import (
    ModelStatus,
    ModelVersion,
    Prediction,
    SpikePeriod,
    TrainingRun,
    TrainingState,
    TrainingTrigger,
)

logger = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]
TRAINING_GROUP = "ml.training"


class TrainingFailed(ValidationFailed):
    code = "training_failed"


# ----------------------------------------------------------------------------- parameters


def _default(name: str) -> Callable[[], Any]:
    """A TrainParams default from the one training config (mlmodel/config.py)."""
    return lambda: getattr(training_config(), name)


@dataclass
class TrainParams:
    """Everything a training run needs besides the data; stored on the TrainingRun and the ModelVersion."""

    market: str = "KRW-BTC"
    data_dir: str = ""  # empty = settings.MARKET_DATA_DIR
    days: int = field(default_factory=lambda: int(conf.get("ML_TRAIN_DAYS")))
    end_day: str = ""  # ISO date; empty = newest day on disk
    horizon_s: float = field(default_factory=_default("horizon_s"))
    window: int = field(default_factory=_default("window"))
    hidden: int = field(default_factory=lambda: int(conf.get("ML_HIDDEN")))
    layers: int = field(default_factory=lambda: int(conf.get("ML_LAYERS")))
    dropout: float = field(default_factory=lambda: float(conf.get("ML_DROPOUT")))
    epochs: int = field(default_factory=_default("epochs"))
    patience: int = field(default_factory=_default("patience"))
    batch_size: int = field(default_factory=_default("batch_size"))
    lr: float = field(default_factory=_default("lr"))
    seed: int = field(default_factory=lambda: int(conf.get("ML_SEED")))
    max_samples_per_epoch: int = field(default_factory=lambda: int(conf.get("ML_MAX_SAMPLES_PER_EPOCH")))
    n_splits: int = field(default_factory=_default("n_splits"))
    train_stride: int = field(default_factory=lambda: int(conf.get("ML_TRAIN_STRIDE")))
    eval_stride: int = field(default_factory=lambda: int(conf.get("ML_EVAL_STRIDE")))
    baselines: tuple[str, ...] = ("linear_ofi", "gbt")
    device: str = field(default_factory=lambda: str(conf.get("ML_DEVICE")))
    backtest_threshold: float = field(default_factory=_default("backtest_threshold"))
    backtest_order_krw: float = field(default_factory=_default("backtest_order_krw"))
    backtest_latency_ms: int = field(default_factory=_default("backtest_latency_ms"))
    feature_levels: int = field(default_factory=_default("feature_levels"))
    gate_alpha: float = field(default_factory=_default("gate_alpha"))
    gate_min_round_trips: int = field(default_factory=_default("gate_min_round_trips"))
    min_test_samples: int = field(default_factory=_default("min_test_samples"))
    spikes: bool = True
    promote_if_better: bool = False
    compare_incumbent: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["baselines"] = list(self.baselines)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainParams:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        if "baselines" in known:
            known["baselines"] = tuple(known["baselines"])
        params = cls(**known)
        params.validate()
        return params

    def validate(self) -> None:
        errors = []
        if not self.market or len(self.market) > 20:
            errors.append("market")
        for name in (
            "days",
            "window",
            "hidden",
            "layers",
            "epochs",
            "patience",
            "batch_size",
            "n_splits",
            "train_stride",
            "eval_stride",
            "max_samples_per_epoch",
            "feature_levels",
            "gate_min_round_trips",
            "min_test_samples",
        ):
            if int(getattr(self, name)) < 1:
                errors.append(name)
        if not (0 < self.gate_alpha < 1):
            errors.append("gate_alpha")
        if not (self.horizon_s > 0 and math.isfinite(self.horizon_s)):
            errors.append("horizon_s")
        if not (0 <= self.dropout < 1):
            errors.append("dropout")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            errors.append("lr")
        unknown = set(self.baselines) - {"linear_ofi", "gbt"}
        if unknown:
            errors.append("baselines")
        if self.end_day:
            try:
                dt.date.fromisoformat(self.end_day)
            except ValueError:
                errors.append("end_day")
        if errors:
            raise ValidationFailed(
                _("Invalid training parameters: %(names)s.") % {"names": ", ".join(errors)},
                extra={"fields": errors},
            )

    @property
    def root(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(settings.MARKET_DATA_DIR)


# ----------------------------------------------------------------------------- data


@dataclass
class MarketData:
    book: dayfiles.BookArrays
    labelled: Any  # mlmodel.dataset.LabelledFrame
    days: list[dt.date]
    # What was asked for and what could not be had, so the report states the real data range.
    requested: list[dt.date] = field(default_factory=list)
    missing: dict[dt.date, str] = field(default_factory=dict)
    fetched: list[dt.date] = field(default_factory=list)
    terms: Any = None  # mlmodel.dataset.DataTerms: the data's own tick table and fee (import_book)


@dataclass
class DaySelection:
    """The last N calendar days a training asked for, which ones it got (local, or fetched from the archive),
    and which are missing entirely (never recorded, never uploaded, or refused by the checksum)."""

    requested: list[dt.date]
    days: list[dt.date]
    fetched: list[dt.date]
    missing: dict[dt.date, str]


def _day_root(root: Path, kind: str, market: str, day: dt.date) -> Path:
    """The live directory when it still has the day, else the training cache (``training_days_select`` put
    the verified archived copy there)."""
    if dayfiles.segment_paths(dayfiles.day_dir(root, kind, market, day)):
        return root
    return conf.training_cache_dir()


def _read_days(root: Path, kind: str, market: str, days: Sequence[dt.date]) -> pa.Table:
    tables = [dayfiles.read_day(_day_root(root, kind, market, d), kind, market, d) for d in days]
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if not tables:
        return dayfiles.read_days(root, kind, market, [])
    return pa.concat_tables(tables, promote_options="default")


def _load_days(root: Path, market: str, days: Sequence[dt.date], params: TrainParams) -> MarketData:
    from mlmodel.dataset import data_terms, label_frame
    from mlmodel.features import FeatureConfig, compute_features

    book_t = _read_days(root, "orderbook", market, days)
    if book_t.num_rows == 0:
        raise TrainingFailed(
            _("No order-book data for %(market)s on the selected days.") % {"market": market}
        )
    trade_t = _read_days(root, "trade", market, days)
    gap_t = _read_days(root, "gap", market, days)
    gaps = None
    if gap_t.num_rows:
        gaps = np.column_stack([gap_t.column("ts_start").to_numpy(), gap_t.column("ts_end").to_numpy()])
    book = dayfiles.book_arrays(book_t)
    trades = dayfiles.trade_arrays(trade_t) if trade_t.num_rows else None
    try:
        terms = data_terms(book_t)
        tick_fn = terms.tick_fn()
    except ValueError as exc:  # the importer's BookImportError or a bad fee value, with the value
        raise TrainingFailed(str(exc)) from exc
    frame = compute_features(
        book, trades, config=FeatureConfig(levels=params.feature_levels), gaps=gaps, tick_fn=tick_fn
    )
    return MarketData(
        book=book, labelled=label_frame(frame, horizon_s=params.horizon_s), days=list(days), terms=terms
    )


def training_days_select(params: TrainParams) -> DaySelection:
    """The last ``params.days`` calendar days up to ``end_day`` (default: the newest day recorded, locally or
    in the archive). Local days are read in place; days retention removed are fetched from their verified
    upload into the training cache (SHA-256 checked); the rest are logged and returned as missing."""
    from market import archive

    # DayUpload rows describe the collector's own directory; another data_dir (e.g. the real sample) is
    # read as it is, with no archive behind it.
    use_archive = params.root.resolve() == Path(settings.MARKET_DATA_DIR).resolve()
    if params.end_day:
        end: dt.date | None = dt.date.fromisoformat(params.end_day)
    elif use_archive:
        available = archive.market_days_available(market=params.market, root=params.root)
        end = available[-1].day if available else None
    else:
        local = dayfiles.list_days(params.root, "orderbook", params.market)
        end = local[-1] if local else None
    if end is None:
        return DaySelection(requested=[], days=[], fetched=[], missing={})
    requested = [end - dt.timedelta(days=i) for i in range(params.days - 1, -1, -1)]
    cache = conf.training_cache_dir()
    days: list[dt.date] = []
    fetched: list[dt.date] = []
    missing: dict[dt.date, str] = {}

    def roots_of(day: dt.date) -> dict[str, Path | None]:
        """Where each kind of ``day`` can be read (``None``: nowhere); the order book first, since a day
        without it is not used at all."""
        roots: dict[str, Path | None] = {}
        for kind in dayfiles.KINDS:
            if use_archive:
                roots[kind] = archive.day_files_ensure_local(
                    kind=kind, market=params.market, day=day, cache_dir=cache, root=params.root
                )
            else:
                local = dayfiles.segment_paths(dayfiles.day_dir(params.root, kind, params.market, day))
                roots[kind] = params.root if local else None
            if roots["orderbook"] is None:
                break
        return roots

    for day in requested:
        try:
            roots = roots_of(day)
        except archive.DayArchiveError as exc:
            logger.error("training %s: day %s not used: %s", params.market, day, exc)
            missing[day] = str(exc)
            continue
        if roots["orderbook"] is None:
            missing[day] = "no order-book data locally and no verified upload"
            continue
        if roots.get("trade") is None:
            logger.warning("training %s: %s has order-book data but no trades", params.market, day)
        days.append(day)
        if any(r is not None and r != params.root for r in roots.values()):
            fetched.append(day)
    if missing:
        logger.warning(
            "training %s: %d of %d requested days missing entirely: %s",
            params.market,
            len(missing),
            len(requested),
            ", ".join(d.isoformat() for d in missing),
        )
    if fetched:
        logger.info("training %s: fetched archived days %s", params.market, [d.isoformat() for d in fetched])
    if use_archive:
        archive.day_files_cache_prune(cache_dir=cache, market=params.market, before=requested[0])
    return DaySelection(requested=requested, days=days, fetched=fetched, missing=missing)


def training_days(params: TrainParams) -> list[dt.date]:
    """The days a training on ``params`` uses (see :func:`training_days_select`)."""
    return training_days_select(params).days


def _slice_table(table: pa.Table, lo: int, hi: int, column: str = "ts") -> pa.Table:
    ts = table.column(column)
    return table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less_equal(ts, hi)))


def spike_periods_store(*, params: TrainParams, data: MarketData) -> list[SpikePeriod]:
    """Find spike/crash periods (moves > k sigma) in the recent data and keep their raw data (with the
    feature look-back before them) in the spike store, so later trainings still see them after the
    collector's local retention has removed the day. Periods overlapping stored ones are skipped."""
    from mlmodel.dataset import find_spike_periods

    frame = data.labelled.frame
    periods = find_spike_periods(
        frame.ts,
        frame.mid,
        window_s=float(conf.get("ML_SPIKE_WINDOW_S")),
        k=float(conf.get("ML_SPIKE_K")),
        pad_s=float(conf.get("ML_SPIKE_PAD_S")),
    )
    if not periods:
        return []
    lookback = frame.config.lookback_ms + params.window * 2000
    existing = list(SpikePeriod.objects.filter(market=params.market).values_list("start_ms", "end_ms"))
    book_t = trade_t = gap_t = None
    created = []
    root = conf.spike_dir()
    for start, end in periods:
        if any(s <= end and start <= e for s, e in existing):
            continue
        if book_t is None:
            book_t = _read_days(params.root, "orderbook", params.market, data.days)
            trade_t = _read_days(params.root, "trade", params.market, data.days)
            gap_t = _read_days(params.root, "gap", params.market, data.days)
        day = dayfiles.day_of(start)
        for kind, table, col in (
            ("orderbook", book_t, "ts"),
            ("trade", trade_t, "ts"),
            ("gap", gap_t, "ts_end"),
        ):
            assert table is not None
            part = _slice_table(table, start - lookback, end, col) if table.num_rows else table
            if part.num_rows == 0:
                continue
            directory = dayfiles.day_dir(root, kind, params.market, day)
            n = dayfiles.next_part_number(directory)
            dayfiles.write_table_atomic(part, directory / f"{dayfiles.PART_PREFIX}{n:05d}.parquet")
        try:
            created.append(
                SpikePeriod.objects.create(market=params.market, start_ms=start, end_ms=end, day=day)
            )
        except IntegrityError:
            continue
        existing.append((start, end))
    return created


def _older_spikes(params: TrainParams, before_ms: int) -> tuple[Any, list[tuple[int, int]]]:
    """Labelled frames of stored spike periods older than the recent data; a period that runs into the recent
    data is cut where that data starts (the rest of it is in the recent data already)."""
    from mlmodel.dataset import LabelledFrame, concat_labelled, label_frame, load_frame
    from mlmodel.features import FeatureConfig

    periods = list(
        SpikePeriod.objects.filter(market=params.market, start_ms__lt=before_ms).order_by("start_ms")
    )
    if not periods:
        return None, []
    root = conf.spike_dir()
    by_day: dict[dt.date, list[SpikePeriod]] = {}
    for p in periods:
        by_day.setdefault(p.day, []).append(p)
    parts, used = [], []
    for day, items in sorted(by_day.items()):
        try:
            frame = load_frame(root, params.market, [day], config=FeatureConfig(levels=params.feature_levels))
        except ValueError:
            continue  # the stored slice is gone (e.g. deleted by hand): train without it
        lf = label_frame(frame, horizon_s=params.horizon_s)
        for p in items:
            end = min(p.end_ms, before_ms - 1)
            lo = int(np.searchsorted(frame.ts, p.start_ms, side="left"))
            hi = int(np.searchsorted(frame.ts, end, side="right"))
            if hi <= lo:
                continue
            y = lf.y[lo:hi].copy()
            y[frame.ts[lo:hi] + int(params.horizon_s * 1000) > end] = np.nan
            parts.append(LabelledFrame(frame=frame.slice(lo, hi), y=y, horizon_s=params.horizon_s))
            used.append((p.start_ms, end))
    if not parts:
        return None, []
    return concat_labelled(parts), used


# ----------------------------------------------------------------------------- training


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
    from mlmodel.training import load_artifact

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


def pipeline_run(
    *,
    params: TrainParams,
    data: MarketData,
    extra: Any = None,
    spikes_used: Sequence[tuple[int, int]] = (),
    incumbent: ModelVersion | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PipelineResult:
    """Walk-forward splits over ``data``, the LSTM and the baselines (and ``incumbent`` frozen, when given)
    scored on the same test periods, the report and its plots. Stores nothing."""
    import torch

    from mlmodel.backtest import BacktestConfig
    from mlmodel.baselines import LinearOFI, TreeModel, ZeroReturn
    from mlmodel.evaluation import EvalConfig, walk_forward_evaluate, walk_forward_splits_by_rows
    from mlmodel.report import build_report, json_safe, render_plots
    from mlmodel.training import FrozenModel, TrainConfig, lstm_factory

    emit = progress or (lambda _d: None)
    try:
        splits = walk_forward_splits_by_rows(data.labelled.frame.ts, n_splits=params.n_splits)
    except ValueError as exc:
        raise TrainingFailed(
            _("Not enough data for %(n)s walk-forward splits.") % {"n": params.n_splits}
        ) from exc
    train_cfg = TrainConfig(
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
    )
    on_event, on_epoch = _progress_adapter(params, progress)
    factories: dict[str, Any] = {"persistence": lambda ctx: ZeroReturn()}
    if "linear_ofi" in params.baselines:
        factories["linear_ofi"] = lambda ctx: LinearOFI(ctx.feature_names)
    if "gbt" in params.baselines:
        factories["gbt"] = lambda ctx: TreeModel(seed=params.seed)
    factories["lstm"] = lstm_factory(train_cfg, progress=on_epoch, should_stop=should_stop)
    incumbent_note = ""
    if incumbent is not None:
        inc_bundle = _load_bundle(incumbent)
        if tuple(inc_bundle.feature_names) != tuple(data.labelled.frame.names):
            incumbent_note = "active model uses different features; it cannot be scored on the same test"
        elif inc_bundle.window > params.window:
            incumbent_note = f"active model needs windows of {inc_bundle.window} rows (> {params.window})"
        elif abs(inc_bundle.horizon_s - params.horizon_s) > 1e-9:
            incumbent_note = "active model predicts a different horizon"
        else:
            factories["incumbent"] = lambda ctx: FrozenModel(ctx, inc_bundle)
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
    from mlmodel import gate
    from mlmodel.gate import GateConfig, LiveFit, gate_all, gate_decide
    from mlmodel.report import json_safe

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
    from mlmodel.training import save_artifact

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
    data = _load_days(params.root, params.market, days, params)
    data.requested, data.missing, data.fetched = selection.requested, selection.missing, selection.fetched
    spikes_used: list[tuple[int, int]] = []
    extra = None
    if params.spikes:
        emit({"stage": "spike/crash periods"})
        spike_periods_store(params=params, data=data)
        extra, spikes_used = _older_spikes(params, int(data.labelled.frame.ts[0]))
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
    version = _version_create(
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


def _version_create(*, market: str, artifact: bytes, plots: dict[str, bytes], **fields: Any) -> ModelVersion:
    sha = hashlib.sha256(artifact).hexdigest()
    for _attempt in range(5):
        try:
            with transaction.atomic():
                last = (
                    ModelVersion.objects.select_for_update()
                    .filter(market=market)
                    .order_by("-version")
                    .values_list("version", flat=True)
                    .first()
                )
                version = ModelVersion(
                    market=market,
                    version=(last or 0) + 1,
                    artifact_sha256=sha,
                    code_version=conf.code_version(),
                    **fields,
                )
                version.artifact.save(f"model-{sha[:12]}.pt", ContentFile(artifact), save=False)
                stored = {}
                for key, png in plots.items():
                    path = f"mlmodel/{market}/v{version.version}/plots/{key}.png"
                    stored[key] = default_storage.save(path, ContentFile(png))
                version.plots = stored
                version.save()
                return version
        except IntegrityError:
            continue  # another training allocated the same number at the same moment
    raise Conflict(_("Could not allocate a model version number; try again."))


# ----------------------------------------------------------------------------- registry


def _locked_market_versions(market: str) -> list[ModelVersion]:
    return list(ModelVersion.objects.select_for_update().filter(market=market).order_by("id"))


def _after_change(market: str) -> None:
    version = ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).first()
    data = {
        "market": market,
        "active": version.label if version else None,
        "version_id": version.pk if version else None,
    }
    transaction.on_commit(lambda: realtime.publish(TRAINING_GROUP, {"type": "ml.registry", "data": data}))


@transaction.atomic
def model_promote(*, version: ModelVersion | int, note: str = "") -> ModelVersion:
    """Make ``version`` the active model of its market; the previously active one is retired. Runs under a
    lock on every version row of the market, so two promotions cannot leave two active models."""
    vid = version.pk if isinstance(version, ModelVersion) else int(version)
    head = ModelVersion.objects.filter(pk=vid).values_list("market", flat=True).first()
    if head is None:
        raise NotFound(_("No such model version."))
    rows = _locked_market_versions(head)
    target = next(v for v in rows if v.pk == vid)
    now = timezone.now()
    for v in rows:
        if v.status == ModelStatus.ACTIVE and v.pk != target.pk:
            v.status, v.retired_at = ModelStatus.RETIRED, now
            v.status_note = f"replaced by v{target.version}"
            v.save(update_fields=["status", "retired_at", "status_note"])
    if target.status != ModelStatus.ACTIVE:
        target.status, target.promoted_at, target.retired_at = ModelStatus.ACTIVE, now, None
        target.status_note = note[:300]
        target.save(update_fields=["status", "promoted_at", "retired_at", "status_note"])
    _after_change(target.market)
    logger.info("model promoted", extra={"market": target.market, "version": target.version})
    return target


@transaction.atomic
def model_rollback(*, market: str, note: str = "") -> ModelVersion:
    """Re-activate the most recently active earlier version of ``market`` and retire the current one."""
    rows = _locked_market_versions(market)
    current = next((v for v in rows if v.status == ModelStatus.ACTIVE), None)
    previous = sorted(
        (
            v
            for v in rows
            if v.status == ModelStatus.RETIRED
            and v.promoted_at is not None
            and (current is None or v.pk != current.pk)
        ),
        key=lambda v: (v.promoted_at, v.pk),
        reverse=True,
    )
    if not previous:
        raise Conflict(
            _("There is no earlier active model of %(market)s to roll back to.") % {"market": market}
        )
    target = previous[0]
    now = timezone.now()
    if current is not None:
        current.status, current.retired_at = ModelStatus.RETIRED, now
        current.status_note = (note or f"rolled back to v{target.version}")[:300]
        current.save(update_fields=["status", "retired_at", "status_note"])
    target.status, target.retired_at = ModelStatus.ACTIVE, None
    target.promoted_at = now
    target.status_note = f"rolled back from v{current.version}" if current else "rolled back"
    target.save(update_fields=["status", "retired_at", "promoted_at", "status_note"])
    _after_change(market)
    return target


@transaction.atomic
def model_retire(*, version: ModelVersion | int, note: str = "") -> ModelVersion:
    """Retire a candidate (or a former model). The active model is replaced by promotion or roll-back,
    never just retired, so a market that has a model keeps serving one."""
    vid = version.pk if isinstance(version, ModelVersion) else int(version)
    head = ModelVersion.objects.filter(pk=vid).values_list("market", flat=True).first()
    if head is None:
        raise NotFound(_("No such model version."))
    rows = _locked_market_versions(head)
    target = next(v for v in rows if v.pk == vid)
    if target.status == ModelStatus.ACTIVE:
        raise Conflict(_("The active model cannot be retired; promote another version or roll back."))
    if target.status != ModelStatus.RETIRED:
        target.status, target.retired_at, target.status_note = ModelStatus.RETIRED, timezone.now(), note[:300]
        target.save(update_fields=["status", "retired_at", "status_note"])
    return target


def promotion_decision(
    *, version: ModelVersion, report: dict[str, Any], incumbent: ModelVersion | None
) -> dict[str, Any]:
    """Apply the promotion gate (mlmodel/gate.py, run on the walk-forward test in ``pipeline_run``): the
    candidate must beat persistence and the best cheap baseline with significance, make a positive net
    P&L over enough round trips, do no worse than the active model on the same periods and fit the live
    feed. An active model that could not be scored on the same test leaves the choice to an operator."""
    gate = (report.get("gate") or {}).get("lstm") or {}
    out: dict[str, Any] = {
        "candidate": version.label,
        "gate": gate,
        "candidate_net_pnl": gate.get("net_pnl"),
        "candidate_round_trips": gate.get("round_trips"),
    }
    if not gate:
        return {**out, "promote": False, "reason": "the candidate's report has no gate result"}
    if incumbent is not None:
        out["incumbent"] = incumbent.label
        out["incumbent_net_pnl"] = gate.get("incumbent_net_pnl")
        if gate.get("incumbent_net_pnl") is None and gate.get("passed"):
            note = report.get("data", {}).get("incumbent_note") or "active model could not be scored"
            return {**out, "promote": False, "reason": f"{note}; promote by hand after reading the report"}
    return {**out, "promote": bool(gate.get("passed")), "reason": str(gate.get("reason", ""))}


# ----------------------------------------------------------------------------- training runs


def training_run_start(
    *,
    market: str,
    params: dict[str, Any] | None = None,
    trigger: str = TrainingTrigger.ADMIN,
    requested_by: Any = None,
) -> TrainingRun:
    """Record a queued training run and queue ``mlmodel.tasks.train_model`` on the ml queue after commit."""
    import uuid

    p = TrainParams.from_dict({**(params or {}), "market": market})
    training_runs_fail_stale()
    training_runs_fail_undelivered()
    if TrainingRun.objects.filter(
        market=market, state__in=[TrainingState.QUEUED, TrainingState.RUNNING]
    ).exists():
        raise Conflict(_("A training run for %(market)s is already queued or running.") % {"market": market})
    task_id = str(uuid.uuid4())
    run = TrainingRun.objects.create(
        market=market,
        params=p.to_dict(),
        trigger=trigger,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        total_epochs=p.epochs,
        total_splits=p.n_splits,
        celery_task_id=task_id,
        stage="queued",
    )

    def _send() -> None:
        from mlmodel.tasks import train_model

        try:
            train_model.apply_async(kwargs={"run_id": run.pk}, queue="ml", task_id=task_id)
        except Exception as exc:  # noqa: BLE001 - any broker error: the run says so instead of waiting
            logger.warning("training run %s could not be queued", run.pk, exc_info=True)
            reason = f"{exc.__class__.__name__}: {exc}"[:300]
            _training_run_fail_undelivered(
                run_id=run.pk,
                message=f"The training run could not be sent to the ml queue ({reason}). "
                "Is the broker running? Start it again once it is.",
            )
            run.refresh_from_db()

    transaction.on_commit(_send)
    return run


def pickup_timeout_s() -> float:
    """How long a queued run may wait for an ml worker to take it (``ML_TRAINING_PICKUP_TIMEOUT_S``)."""
    return float(conf.get("ML_TRAINING_PICKUP_TIMEOUT_S"))


def _training_run_fail_undelivered(*, run_id: int, message: str) -> bool:
    # Conditional on "still queued, not picked up": it races training_run_pickup and exactly one wins.
    now = timezone.now()
    changed = TrainingRun.objects.filter(
        pk=run_id, state=TrainingState.QUEUED, picked_up_at__isnull=True
    ).update(
        state=TrainingState.FAILED, stage="undelivered", finished_at=now, updated_at=now, message=message
    )
    return bool(changed)


def training_runs_fail_undelivered(*, timeout_s: float | None = None) -> int:
    """Fail queued runs that no ml worker took within ``timeout_s`` (default: the setting), so that the admin
    says so within a minute or two and "Train now" works again; a late delivery is then refused."""
    timeout = pickup_timeout_s() if timeout_s is None else float(timeout_s)
    cutoff = timezone.now() - dt.timedelta(seconds=timeout)
    message = _(
        "No ml worker picked this run up within %(timeout)s s; is the ml worker running? "
        "(python3 dev.py run starts it; with Redis, check that the worker and the web server use the same "
        "REDIS_URL.) Start it again once it is."
    ) % {"timeout": f"{timeout:.0f}"}
    changed = 0
    stuck = TrainingRun.objects.filter(
        state=TrainingState.QUEUED, picked_up_at__isnull=True, created_at__lt=cutoff
    ).values_list("pk", flat=True)
    for run_id in list(stuck):
        if _training_run_fail_undelivered(run_id=run_id, message=message):
            logger.warning("training run %s: no ml worker picked it up within %.0f s", run_id, timeout)
            changed += 1
    return changed


def training_run_pickup(*, run_id: int) -> TrainingRun | None:
    """The ml worker took the message: mark the run picked up and return it, or None when it must not run
    (missing, already finished, or failed as undelivered before the worker got to it)."""
    now = timezone.now()
    TrainingRun.objects.filter(pk=run_id, state=TrainingState.QUEUED, picked_up_at__isnull=True).update(
        picked_up_at=now, stage="picked up by the ml worker", updated_at=now
    )
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.state != TrainingState.QUEUED:
        return None
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})
    return run


def training_runs_fail_stale(*, max_silence_s: float = 2 * 3600) -> int:
    """A run whose worker died (killed, machine lost) stops writing progress; after ``max_silence_s``
    without an update it is marked failed so that training can be started again."""
    cutoff = timezone.now() - dt.timedelta(seconds=max_silence_s)
    return TrainingRun.objects.filter(
        state__in=[TrainingState.QUEUED, TrainingState.RUNNING], updated_at__lt=cutoff
    ).update(
        state=TrainingState.FAILED,
        stage="failed",
        finished_at=timezone.now(),
        message="No progress for a long time: the worker running it stopped. Start it again.",
    )


def training_progress_percent(*, run: TrainingRun, **fields: Any) -> float:
    """Share of the run done, 0..99 until it finishes: whole splits done plus the current split's epochs.
    Early stopping jumps forward; callers keep the maximum so that the bar never goes backwards."""
    split = int(fields.get("split", run.split) or 0)
    total_splits = max(int(fields.get("total_splits", run.total_splits) or 0), 1)
    epoch = int(fields.get("epoch", run.epoch) or 0)
    total_epochs = max(int(fields.get("total_epochs", run.total_epochs) or 0), 1)
    if split < 1:
        return 0.0
    done = (min(split, total_splits) - 1 + min(epoch, total_epochs) / total_epochs) / total_splits
    return round(min(99.0, 100.0 * done), 1)


def _run_payload(run: TrainingRun) -> dict[str, Any]:
    from mlmodel.selectors import training_run_progress

    return training_run_progress(run=run)


def training_run_update(*, run: TrainingRun, **fields: Any) -> None:
    """Write progress fields and push them to the admin's live view."""
    for k, v in fields.items():
        setattr(run, k, v)
    run.save(update_fields=[*fields.keys(), "updated_at"])
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})


def training_run_execute(
    *, run_id: int, on_progress: Callable[[TrainingRun, dict[str, Any]], None] | None = None
) -> TrainingRun | None:
    """Run a queued training run (the worker side). Safe to call twice: only a queued run is started.
    ``on_progress`` sees the run after each progress write (the command's progress bar)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.state != TrainingState.QUEUED:
            return run
        run.state, run.started_at, run.stage = TrainingState.RUNNING, timezone.now(), "starting"
        run.picked_up_at = run.picked_up_at or run.started_at
        run.process_id = os.getpid()
        run.save(update_fields=["state", "started_at", "picked_up_at", "stage", "process_id", "updated_at"])
    realtime.publish(TRAINING_GROUP, {"type": "ml.training", "data": _run_payload(run)})
    params = TrainParams.from_dict(run.params)

    def progress(d: dict[str, Any]) -> None:
        fields = {
            k: d[k]
            for k in ("stage", "epoch", "total_epochs", "train_loss", "val_loss", "eta_seconds")
            if k in d
        }
        if "split" in d:
            if d["split"] != run.split and "epoch" not in d:
                fields["epoch"] = 0  # a new split starts at epoch 0, not at the last split's final epoch
            fields["split"] = d["split"]
            fields["total_splits"] = d.get("total_splits", run.total_splits)
        if "stage" in fields:
            fields["stage"] = str(fields["stage"])[:120]
        fields["progress"] = max(run.progress, training_progress_percent(run=run, **fields))
        training_run_update(run=run, **fields)
        if on_progress is not None:
            on_progress(run, d)

    try:
        incumbent = None
        if params.compare_incumbent:
            incumbent = ModelVersion.objects.filter(market=params.market, status=ModelStatus.ACTIVE).first()
        result = model_train(params=params, incumbent=incumbent, progress=progress)
        decision: dict[str, Any] = {}
        if params.promote_if_better:
            decision = promotion_decision(version=result.version, report=result.report, incumbent=incumbent)
            current = ModelVersion.objects.filter(market=params.market, status=ModelStatus.ACTIVE).first()
            if decision["promote"] and (current.pk if current else None) != (
                incumbent.pk if incumbent else None
            ):
                decision = {
                    **decision,
                    "promote": False,
                    "reason": "the active model changed during training; compare again before promoting",
                }
            if decision["promote"]:
                model_promote(version=result.version, note=f"auto: {decision['reason']}"[:300])
            else:  # the admin's and /model's version list say why it does not trade
                result.version.status_note = f"not promoted: {decision['reason']}"[:300]
                result.version.save(update_fields=["status_note"])
        message = result.report.get("verdict", "")
        if decision:
            message += f"\nPromotion: {'yes' if decision['promote'] else 'no'} - {decision['reason']}."
        training_run_update(
            run=run,
            state=TrainingState.SUCCEEDED,
            result_version=result.version,
            finished_at=timezone.now(),
            stage="done",
            message=message,
            decision=decision,
            eta_seconds=0.0,
            progress=100.0,
        )
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        text = (
            str(exc) if isinstance(exc, ValidationFailed | ValueError) else f"{exc.__class__.__name__}: {exc}"
        )
        training_run_update(
            run=run,
            state=TrainingState.FAILED,
            finished_at=timezone.now(),
            stage="failed",
            message=text[:2000],
        )
        if not isinstance(exc, ValidationFailed | ValueError):
            raise
    return run


def nightly_retrain_prepare(
    *, markets: Sequence[str] | None = None, params: dict[str, Any] | None = None
) -> list[TrainingRun]:
    """Queued nightly runs, one per market that has day files and no run in progress."""
    training_runs_fail_stale()
    training_runs_fail_undelivered()
    runs = []
    for market in list(markets or settings.MARKET_CODES):
        p = TrainParams.from_dict(
            {**(params or {}), "market": market, "promote_if_better": True, "compare_incumbent": True}
        )
        if not dayfiles.list_days(p.root, "orderbook", market):
            logger.info("nightly retrain: no day files", extra={"market": market})
            continue
        if TrainingRun.objects.filter(
            market=market, state__in=[TrainingState.QUEUED, TrainingState.RUNNING]
        ).exists():
            logger.warning("nightly retrain: a run is already queued or running", extra={"market": market})
            continue
        runs.append(
            TrainingRun.objects.create(
                market=market,
                params=p.to_dict(),
                trigger=TrainingTrigger.NIGHTLY,
                total_epochs=p.epochs,
                total_splits=p.n_splits,
                stage="queued",
                picked_up_at=timezone.now(),  # created by the worker that runs it: never undelivered
            )
        )
    return runs


def training_runs_execute(*, run_ids: Sequence[int]) -> list[TrainingRun]:
    """Run queued runs one after the other; one market's failure does not stop the others."""
    out = []
    for run_id in run_ids:
        try:
            training_run_execute(run_id=run_id)
        except Exception:  # noqa: BLE001 - recorded on the run; go on with the next market
            logger.exception("training run %s failed", run_id)
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is not None:
            out.append(run)
    return out


def nightly_retrain(
    *, markets: Sequence[str] | None = None, params: dict[str, Any] | None = None
) -> list[TrainingRun]:
    """For each market with day files: train a candidate, score it and the active model on the same
    walk-forward test and promote it only if it is better (inline)."""
    runs = nightly_retrain_prepare(markets=markets, params=params)
    return training_runs_execute(run_ids=[r.pk for r in runs])


def training_in_subprocess() -> bool:
    """In the ml worker, training runs in its own process so that prediction serving (the same one-process
    worker) goes on meanwhile; elsewhere (tests, eager mode, commands) it runs inline."""
    value = conf.get("ML_TRAIN_IN_SUBPROCESS")
    if value is None:
        return os.environ.get("OBSERVATOR_ROLE") == "worker"
    return bool(value)


def training_runs_stop(*, run_ids: Sequence[int], message: str) -> int:
    """Fail the unfinished runs of ``run_ids`` with ``message`` (the training process was stopped)."""
    return TrainingRun.objects.filter(
        pk__in=list(run_ids), state__in=[TrainingState.QUEUED, TrainingState.RUNNING]
    ).update(state=TrainingState.FAILED, finished_at=timezone.now(), stage="failed", message=message[:2000])


def training_runs_spawn(*, run_ids: Sequence[int]) -> int:
    """Start ``manage.py train --run-id ...`` in the background. It stops with the stack: it stays in the ml
    worker's process group (the launcher's SIGTERM to the group reaches it) and watches its parent
    (``--parent-pid``: SIGTERM to itself when the worker is gone, even killed with SIGKILL); stopped, it
    fails its runs "training stopped: the stack was shut down". It enforces ML_TRAIN_TIME_LIMIT_S itself, and
    a run whose process died is failed after two hours without progress. Returns the child's pid."""
    import subprocess
    import sys

    args = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "train", "--no-progress"]
    args += ["--parent-pid", str(os.getpid())]
    for run_id in run_ids:
        args += ["--run-id", str(int(run_id))]
    log_dir = Path(settings.VAR_DIR) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"training-{int(run_ids[0])}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    TrainingRun.objects.filter(pk__in=list(run_ids), state=TrainingState.QUEUED).update(
        stage=f"starting (process {proc.pid})", process_id=proc.pid
    )
    logger.info("training process %s started for runs %s", proc.pid, list(run_ids))
    return int(proc.pid)


# ----------------------------------------------------------------------------- predictions


def predictions_store(*, rows: Sequence[dict[str, Any]]) -> list[Prediction]:
    objs = [
        Prediction(
            market=r["market"],
            ts=dt.datetime.fromtimestamp(int(r["ts"]) / 1000, tz=dt.UTC),
            horizon_s=float(r["horizon_s"]),
            predicted_return=float(r["predicted_return"]),
            mid=r.get("mid"),
            best_bid=r.get("best_bid"),
            best_ask=r.get("best_ask"),
            model_version_id=r.get("model_version_id"),
        )
        for r in rows
    ]
    return Prediction.objects.bulk_create(objs)


def predictions_prune(*, keep_seconds: float | None = None) -> int:
    keep = float(keep_seconds if keep_seconds is not None else conf.get("ML_PREDICTION_KEEP_S"))
    cutoff = timezone.now() - dt.timedelta(seconds=keep)
    deleted, _by_model = Prediction.objects.filter(created_at__lt=cutoff).delete()
    return int(deleted)
