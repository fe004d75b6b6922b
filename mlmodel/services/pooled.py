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

from mlmodel.dataset import Normalizer, WindowSet, make_windowset, pooled_windowset
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
from mlmodel.training import ModelBundle, PooledSplitModel, save_artifact, train_lstm

logger = logging.getLogger(__name__)

POOLED_NAME = "lstm-pooled"


@dataclass
class PooledPipelineResult:
    """Per market, its walk-forward result (gate included) or why it has none; the per-split models."""

    markets: tuple[str, ...]
    splits: list[Split]
    models: dict[int, ModelBundle]
    results: dict[str, PipelineResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def pooled_splits(datas: Mapping[str, MarketData], *, n_splits: int) -> list[Split]:
    """Walk-forward splits common to every market, by rows of all markets' snapshots together: a split's
    training periods (of every market) all end before its validation and test periods begin, so no market's
    test period is learnt from another market's later data."""
    ts = np.sort(np.concatenate([np.asarray(d.labelled.frame.ts, dtype=np.int64) for d in datas.values()]))
    try:
        return walk_forward_splits_by_rows(ts, n_splits=n_splits)
    except ValueError as exc:
        raise TrainingFailed(_("Not enough data for %(n)s walk-forward splits.") % {"n": n_splits}) from exc


def pooled_pipeline_run(
    *,
    params: TrainParams,
    datas: Mapping[str, MarketData],
    incumbents: Mapping[str, ModelVersion | None] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PooledPipelineResult:
    """Train one pooled LSTM per walk-forward split on every market's training period of that split, then
    run each market through ``pipeline_run`` with those models seen from that market: its baselines, its
    incumbent, its test periods and its gate. Stores nothing."""
    markets = tuple(sorted(datas))
    if not markets:
        raise TrainingFailed(_("No market has data for the pooled model."))
    splits = pooled_splits(datas, n_splits=params.n_splits)
    cfg = train_config_of(params)
    on_event, on_epoch = _progress_adapter(params, progress)
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
            lf = datas[market].labelled
            tr, va = split_fit_ends(lf, split, window=params.window, train_stride=params.train_stride)
            if len(tr) == 0 or len(va) == 0:
                norms.append(None)
                continue
            norm, Xn = split_normalised(lf, split)
            tr_parts.append((i, make_windowset(lf, Xn, tr, window=params.window)))
            va_parts.append((i, make_windowset(lf, Xn, va, window=params.window)))
            norms.append(norm)
            trained.append(market)
        if not tr_parts:
            continue
        first = next(n for n in norms if n is not None)
        if identity is None:
            identity = Normalizer(mean=np.zeros_like(first.mean), std=np.ones_like(first.std))
        frame = datas[trained[0]].labelled.frame
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
        models[split.index] = bundle
    if not models:
        raise TrainingFailed(_("No walk-forward split had enough labelled windows to train on."))
    out = PooledPipelineResult(markets=markets, splits=splits, models=models)
    for market in markets:

        def view(ctx: SplitContext, market: str = market) -> PooledSplitModel:
            return PooledSplitModel(models[ctx.split.index], market)

        try:
            out.results[market] = pipeline_run(
                params=dataclasses.replace(params, market=market),
                data=datas[market],
                incumbent=(incumbents or {}).get(market),
                splits=splits,
                lstm=view,
                should_stop=should_stop,
            )
        except TrainingFailed as exc:
            out.failed[market] = str(exc)
            logger.info("pooled model: %s not evaluated: %s", market, exc)
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
    recent days), :func:`pooled_pipeline_run`, and per evaluated market a candidate version of its own whose
    artifact is the shared pooled model (stored once: same bytes, same file)."""
    params.validate()
    emit = progress or (lambda _d: None)
    emit({"stage": f"loading day files of {len(markets)} markets"})
    datas: dict[str, MarketData] = {}
    failed: dict[str, str] = {}
    for market in markets:
        p = dataclasses.replace(params, market=market)
        selection = training_days_select(p)
        if not selection.days:
            failed[market] = "no order-book day files"
            continue
        try:
            data = market_data_load(root=p.root, market=market, days=selection.days, params=p)
        except TrainingFailed as exc:
            failed[market] = str(exc)
            continue
        data.requested, data.missing, data.fetched = selection.requested, selection.missing, selection.fetched
        datas[market] = data
    result = pooled_pipeline_run(
        params=params, datas=datas, incumbents=incumbents, progress=progress, should_stop=should_stop
    )
    failed.update(result.failed)
    emit({"stage": "storing the pooled model's versions"})
    artifacts: dict[int, bytes] = {}
    versions: dict[str, ModelVersion] = {}
    reports: dict[str, dict[str, Any]] = {}
    for market, res in result.results.items():
        bundle = res.bundle
        data_bytes = artifacts.setdefault(id(bundle), save_artifact(bundle))
        frame = datas[market].labelled.frame
        versions[market] = model_version_create(
            market=market,
            name=POOLED_NAME,
            horizon_s=params.horizon_s,
            data_start=dt.datetime.fromtimestamp(int(frame.ts[0]) / 1000, tz=dt.UTC),
            data_end=dt.datetime.fromtimestamp(int(frame.ts[-1]) / 1000, tz=dt.UTC),
            data_days=[d.isoformat() for d in datas[market].days],
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
        reports[market] = res.report
    return PooledTrainResult(versions=versions, reports=reports, failed=failed)
