"""Training data: which days a training reads (local, or fetched from the verified archive), the day files
as labelled features, and the spike store that keeps spike/crash periods past local retention."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.db import IntegrityError
from django.utils.translation import gettext_lazy as _

from market import archive, dayfiles
from mlmodel import conf
from mlmodel.dataset import (
    LabelledFrame,
    concat_labelled,
    data_terms,
    find_spike_periods,
    label_frame,
    load_frame,
)
from mlmodel.features import FeatureConfig, compute_features
from mlmodel.models import SpikePeriod
from mlmodel.services.params import TrainingFailed, TrainParams

logger = logging.getLogger(__name__)


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


def _read_days(root: Path, kind: str, market: str, days: Sequence[dt.date]) -> pa.Table:
    """``days`` from ``root``, or from the training cache where ``training_days_select`` put the verified
    archived copy of a day the live directory no longer has."""
    return dayfiles.read_days(root, kind, market, days, fallback_root=conf.training_cache_dir())


def market_data_load(*, root: Path, market: str, days: Sequence[dt.date], params: TrainParams) -> MarketData:
    """The order book, trades and gaps of ``days`` as labelled features (what a walk-forward run reads)."""
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
    try:
        terms = data_terms(book_t)
        tick_fn = terms.tick_fn()
    except ValueError as exc:  # the importer's BookImportError or a bad fee value, with the value
        raise TrainingFailed(str(exc)) from exc
    book = dayfiles.book_arrays(book_t)
    trades = dayfiles.trade_arrays(trade_t) if trade_t.num_rows else None
    del book_t, trade_t  # the Arrow tables (a GiB for 5 busy days) are not needed past this point
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


def older_spikes_load(params: TrainParams, before_ms: int) -> tuple[Any, list[tuple[int, int]]]:
    """Labelled frames of stored spike periods older than the recent data; a period that runs into the recent
    data is cut where that data starts (the rest of it is in the recent data already)."""
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
