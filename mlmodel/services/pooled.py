"""The pooled model: one LSTM trained on every enabled market's windows (each market normalised with its own
statistics, a learned embedding per market), then judged market by market through the same walk-forward
pipeline and promotion gate as a per-market model. Each market gets its own model version (its own report,
gate result and promotion decision) pointing at the one shared artifact. Imports torch: only training does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.utils.translation import gettext_lazy as _

from mlmodel.dataset import (
    LabelledFrame,
    Normalizer,
    WindowSet,
    make_windowset,
    pooled_windowset,
    window_ends,
)
from mlmodel.evaluation import (
    Split,
    SplitContext,
    split_fit_ends,
    split_normalised,
    walk_forward_splits_by_rows,
)
from mlmodel.models import ModelVersion
from mlmodel.services.data import MarketData, market_data_load, training_days_select
from mlmodel.services.params import ProgressFn, TrainingFailed, TrainParams
from mlmodel.services.registry import model_version_create
from mlmodel.services.train import PipelineResult, _progress_adapter, pipeline_run, train_config_of
from mlmodel.training import ModelBundle, PooledSplitModel, TrainingCancelled, save_artifact, train_lstm

logger = logging.getLogger(__name__)

POOLED_NAME = "lstm-pooled"


@dataclass
class PooledPipelineResult:
    """Per market, its walk-forward result (gate included; kept only when no ``on_result`` took it) or why it
    has none; every evaluated market's report; the per-split models."""

    markets: tuple[str, ...]
    splits: list[Split]
    models: dict[int, ModelBundle]
    results: dict[str, PipelineResult] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


# Every SPLIT_TS_STRIDE-th snapshot time of each market (and its first and last) places the common splits.
SPLIT_TS_STRIDE = 32
# The pooled training keeps blocks of up to this many window ends (plus the window's history rows) per
# market, and at least MIN_BLOCKS of them, so every split's periods get some.
BLOCK_ENDS = 1_000
MIN_BLOCKS = 24


@dataclass
class MarketSample:
    """What the pooled training keeps of one market between reading it and training on it: evenly spread
    blocks of its rows, as a labelled frame of their own (a block edge starts a new segment, so no window
    spans two blocks), and every ``SPLIT_TS_STRIDE``-th snapshot time for the common splits. All its rows
    when they fit in the budget (``ML_POOLED_ROWS_PER_MARKET``); the market's other rows are dropped once
    read, so memory grows with markets x budget, not with the days."""

    labelled: LabelledFrame
    window: int
    split_ts: np.ndarray  # int64
    rows_total: int

    @classmethod
    def of(cls, lf: LabelledFrame, *, window: int, rows: int, block_ends: int = BLOCK_ENDS) -> MarketSample:
        f = lf.frame
        n = len(f)
        if n <= rows:
            kept = lf
        else:
            n_blocks = max(MIN_BLOCKS, rows // (block_ends + window - 1))
            span = max(rows // n_blocks, window + 1)
            n_blocks = max(1, rows // span)
            starts = np.linspace(0, n - span, n_blocks).astype(np.int64)
            keep = np.unique((starts[:, None] + np.arange(span)[None, :]).ravel())
            seg = f.segment[keep]
            breaks = (np.diff(keep) != 1) | (np.diff(seg) != 0)
            frame = dataclasses.replace(
                f,
                ts=f.ts[keep],
                mid=f.mid[keep],
                bid1=f.bid1[keep],
                ask1=f.ask1[keep],
                X=np.ascontiguousarray(f.X[keep]),
                valid=f.valid[keep],
                segment=np.r_[0, np.cumsum(breaks)].astype(np.int64),
            )
            kept = LabelledFrame(frame=frame, y=lf.y[keep], horizon_s=lf.horizon_s)
        ts = np.asarray(f.ts, dtype=np.int64)
        split_ts = np.unique(np.r_[ts[0], ts[::-1][::SPLIT_TS_STRIDE]])
        return cls(labelled=kept, window=window, split_ts=split_ts, rows_total=n)

    @property
    def ts(self) -> np.ndarray:
        return np.asarray(self.labelled.frame.ts, dtype=np.int64)

    @property
    def can_end(self) -> np.ndarray:
        """Per kept row: a full window of valid kept rows of one segment ends here."""
        out = np.zeros(len(self.labelled), dtype=bool)
        out[window_ends(self.labelled, window=self.window, require_label=False)] = True
        return out

    def split_sets(
        self, split: Split, *, train_stride: int, max_val: int | None
    ) -> tuple[Normalizer, WindowSet, WindowSet] | None:
        """The split's training and validation windows from the kept rows, normalised with statistics of the
        kept rows in the split's training period (all its rows when the market fits the budget, else a sample
        spread evenly over it): the per-market run's ``split_fit_ends`` and ``split_normalised`` on the
        sample. None when either set is empty."""
        lf = self.labelled
        tr, va = split_fit_ends(lf, split, window=self.window, train_stride=train_stride, max_val=max_val)
        if len(tr) == 0 or len(va) == 0:
            return None
        norm, Xn = split_normalised(lf, split)
        return (
            norm,
            make_windowset(lf, Xn, tr, window=self.window),
            make_windowset(lf, Xn, va, window=self.window),
        )


def pooled_splits(samples: Mapping[str, MarketSample], *, n_splits: int) -> list[Split]:
    """Walk-forward splits common to every market, by rows of all markets' snapshots together (placed on
    every ``SPLIT_TS_STRIDE``-th one): a split's training periods (of every market) all end before its
    validation and test periods begin, so no market's test period is learnt from another market's later
    data."""
    ts = np.sort(np.concatenate([s.split_ts for s in samples.values()]))
    try:
        return walk_forward_splits_by_rows(ts, n_splits=n_splits)
    except ValueError as exc:
        raise TrainingFailed(_("Not enough data for %(n)s walk-forward splits.") % {"n": n_splits}) from exc


MarketLoader = Callable[[str], MarketData]
ResultFn = Callable[[str, MarketData, PipelineResult], None]


def pooled_samples(
    *,
    params: TrainParams,
    markets: Sequence[str],
    load: MarketLoader,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, MarketSample], dict[str, str]]:
    """Read each market once, keep its bounded training sample (``MarketSample``) and drop the rest; the
    markets that cannot be read, with why."""
    emit = progress or (lambda _d: None)
    failed: dict[str, str] = {}
    samples: dict[str, MarketSample] = {}
    names = sorted(markets)
    for i, market in enumerate(names):
        if should_stop is not None and should_stop():
            raise TrainingCancelled("cancelled while reading the markets")
        emit({"stage": f"sampling market {i + 1}/{len(names)}: {market}"})
        try:
            data = load(market)
        except TrainingFailed as exc:
            failed[market] = str(exc)
            continue
        samples[market] = MarketSample.of(
            data.labelled, window=params.window, rows=params.pooled_rows_per_market
        )
        del data
    if not samples:
        raise TrainingFailed(_("No market has data for the pooled model."))
    return samples, failed


def pooled_models_fit(
    *,
    params: TrainParams,
    samples: Mapping[str, MarketSample],
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[Split], dict[int, ModelBundle]]:
    """The common walk-forward splits and one pooled LSTM per split, trained on every market's sampled
    windows of that split's training period (early-stopped on their validation windows: at most half an
    epoch's samples, shared evenly by the markets)."""
    markets = tuple(sorted(samples))
    splits = pooled_splits(samples, n_splits=params.n_splits)
    cfg = train_config_of(params)
    on_event, on_epoch = _progress_adapter(params, progress)
    max_val = max(1, min(params.max_eval_windows, params.max_samples_per_epoch // (2 * len(markets))))
    identity: Normalizer | None = None
    models: dict[int, ModelBundle] = {}
    for split in splits:
        on_event(
            {"split": split.index, "n_splits": len(splits), "model": f"pooled lstm ({len(markets)} markets)"}
        )
        tr_parts: list[tuple[int, WindowSet]] = []
        va_parts: list[tuple[int, WindowSet]] = []
        norms: list[Normalizer | None] = []
        trained: list[str] = []
        for i, market in enumerate(markets):
            sets = samples[market].split_sets(split, train_stride=params.train_stride, max_val=max_val)
            if sets is None:
                norms.append(None)
                continue
            norm, tr, va = sets
            tr_parts.append((i, tr))
            va_parts.append((i, va))
            norms.append(norm)
            trained.append(market)
        if not tr_parts:
            continue
        first = next(n for n in norms if n is not None)
        if identity is None:
            identity = Normalizer(mean=np.zeros_like(first.mean), std=np.ones_like(first.std))
        frame = samples[trained[0]].labelled.frame
        bundle = train_lstm(
            pooled_windowset(tr_parts),
            pooled_windowset(va_parts),
            config=cfg,
            normalizer=first,
            feature_config=frame.config,
            feature_names=tuple(frame.names),
            horizon_s=params.horizon_s,
            progress=on_epoch,
            should_stop=should_stop,
            markets=markets,
            normalizers=tuple(n if n is not None else identity for n in norms),
        )
        bundle.meta["split"] = split.to_dict()
        bundle.meta["markets_trained"] = trained
        bundle.meta["rows_sampled"] = {m: int(len(samples[m].ts)) for m in trained}
        models[split.index] = bundle
    if not models:
        raise TrainingFailed(_("No walk-forward split had enough labelled windows to train on."))
    return splits, models


def pooled_market_evaluate(
    *,
    params: TrainParams,
    market: str,
    data: MarketData,
    splits: list[Split],
    models: Mapping[int, ModelBundle],
    incumbent: ModelVersion | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PipelineResult:
    """One market's walk-forward evaluation and gate with the pooled models seen from that market, its
    windows normalised with each model's statistics of that market (as serving does them)."""
    raw_X = data.labelled.frame.X

    def view(ctx: SplitContext) -> PooledSplitModel:
        return PooledSplitModel(models[ctx.split.index], market, raw_X=raw_X)

    return pipeline_run(
        params=dataclasses.replace(params, market=market),
        data=data,
        incumbent=incumbent,
        splits=splits,
        lstm=view,
        should_stop=should_stop,
    )


def pooled_pipeline_run(
    *,
    params: TrainParams,
    datas: Mapping[str, MarketData] | None = None,
    markets: Sequence[str] = (),
    load: MarketLoader | None = None,
    incumbents: Mapping[str, ModelVersion | None] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: ResultFn | None = None,
) -> PooledPipelineResult:
    """Train one pooled LSTM per walk-forward split on every market's training period of that split, then
    run each market through ``pipeline_run`` with those models seen from that market: its baselines, its
    incumbent, its test periods and its gate. Stores nothing.

    The markets come as ``datas`` (all in memory) or as ``markets`` and ``load`` (each read once to keep a
    bounded sample for training, ``MarketSample``, and once more for its evaluation, one market at a time:
    memory does not grow with days x markets). ``on_result`` takes each market's result as it is made;
    without it the results are kept in ``results``. A market that cannot be read or evaluated is listed in
    ``failed`` with why."""
    if datas is not None:
        markets, load = tuple(datas), datas.__getitem__
    if load is None:
        raise ValueError("pass datas, or markets and load")
    emit = progress or (lambda _d: None)
    samples, failed = pooled_samples(
        params=params, markets=markets, load=load, progress=progress, should_stop=should_stop
    )
    splits, models = pooled_models_fit(
        params=params, samples=samples, progress=progress, should_stop=should_stop
    )
    trained_markets = tuple(sorted(samples))
    del samples
    out = PooledPipelineResult(markets=trained_markets, splits=splits, models=models, failed=failed)
    for i, market in enumerate(trained_markets):
        emit({"stage": f"evaluating market {i + 1}/{len(trained_markets)}: {market}"})
        try:
            data = load(market)
            res = pooled_market_evaluate(
                params=params,
                market=market,
                data=data,
                splits=splits,
                models=models,
                incumbent=(incumbents or {}).get(market),
                should_stop=should_stop,
            )
        except TrainingFailed as exc:
            out.failed[market] = str(exc)
            logger.info("pooled model: %s not evaluated: %s", market, exc)
            continue
        out.reports[market] = res.report
        if on_result is not None:
            on_result(market, data, res)
        else:
            out.results[market] = res
        del data, res
    return out


@dataclass
class PooledTrainResult:
    """The stored candidates, one per market that was evaluated, and the markets that were not (why)."""

    versions: dict[str, ModelVersion]
    reports: dict[str, dict[str, Any]]
    failed: dict[str, str]


def pooled_model_train(
    *,
    params: TrainParams,
    markets: Sequence[str],
    incumbents: Mapping[str, ModelVersion | None] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PooledTrainResult:
    """The nightly pooled run: every market's last N days (no spike store: the pooled data is the markets'
    recent days), :func:`pooled_pipeline_run` reading one market at a time, and per evaluated market a
    candidate version of its own, stored as soon as it is evaluated, whose artifact is the shared pooled
    model (stored once: same bytes, same file)."""
    params.validate()
    emit = progress or (lambda _d: None)
    selections: dict[str, Any] = {}  # the days picked on the first read, kept for the second

    def load(market: str) -> MarketData:
        p = dataclasses.replace(params, market=market)
        if market not in selections:
            selections[market] = training_days_select(p)
        selection = selections[market]
        if not selection.days:
            raise TrainingFailed("no order-book day files")
        data = market_data_load(root=p.root, market=market, days=selection.days, params=p)
        data.requested, data.missing, data.fetched = selection.requested, selection.missing, selection.fetched
        return data

    artifacts: dict[int, bytes] = {}
    versions: dict[str, ModelVersion] = {}

    def store(market: str, data: MarketData, res: PipelineResult) -> None:
        bundle = res.bundle
        data_bytes = artifacts.setdefault(id(bundle), save_artifact(bundle))
        frame = data.labelled.frame
        versions[market] = model_version_create(
            market=market,
            name=POOLED_NAME,
            horizon_s=params.horizon_s,
            data_start=dt.datetime.fromtimestamp(int(frame.ts[0]) / 1000, tz=dt.UTC),
            data_end=dt.datetime.fromtimestamp(int(frame.ts[-1]) / 1000, tz=dt.UTC),
            data_days=[d.isoformat() for d in data.days],
            spike_periods=[],
            feature_names=list(bundle.feature_names),
            feature_version=bundle.feature_version,
            hyperparameters={
                **dataclasses.replace(params, market=market, markets=()).to_dict(),
                "train_config": res.train_config.to_dict(),
                "feature_config": bundle.feature_config.to_dict(),
                "pooled": {"markets": list(bundle.markets), "market_id": bundle.market_id(market)},
            },
            metrics=res.metrics,
            report=res.report,
            artifact=data_bytes,
            plots=res.plots,
        )

    emit({"stage": f"reading day files of {len(markets)} markets"})
    result = pooled_pipeline_run(
        params=params,
        markets=markets,
        load=load,
        incumbents=incumbents,
        progress=progress,
        should_stop=should_stop,
        on_result=store,
    )
    return PooledTrainResult(versions=versions, reports=result.reports, failed=result.failed)
