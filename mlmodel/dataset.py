"""Datasets for the sequence model: labelled feature frames from day files (last N days + spike periods),
sliding windows of W snapshots, and normalisation statistics fitted on the training window only."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from market import dayfiles, importer
from mlmodel.features import FeatureConfig, FeatureFrame, compute_features
from mlmodel.labels import future_log_return
from mlmodel.ticks import TickFn, krw_tick_size


@dataclass(frozen=True)
class Normalizer:
    """Per-feature mean/std from the training rows only; clipped z-scores. Saved with the model."""

    mean: np.ndarray  # float64 [F]
    std: np.ndarray  # float64 [F]
    clip: float = 8.0

    @classmethod
    def fit(cls, X: np.ndarray, *, rows: np.ndarray | None = None, clip: float = 8.0) -> Normalizer:
        data = np.asarray(X if rows is None else X[rows], dtype=np.float64)
        if data.shape[0] == 0:
            raise ValueError("cannot fit normalisation on zero training rows")
        mean = np.nanmean(data, axis=0)
        std = np.nanstd(data, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        return cls(mean=mean, std=std, clip=clip)

    def transform(self, X: np.ndarray) -> np.ndarray:
        z = (np.asarray(X, dtype=np.float64) - self.mean) / self.std
        return np.clip(np.nan_to_num(z, nan=0.0), -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clip": float(self.clip)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
            clip=float(data.get("clip", 8.0)),
        )


@dataclass(frozen=True)
class LabelledFrame:
    """A feature frame plus its label (future log-return at ``horizon_s``; NaN where undefined)."""

    frame: FeatureFrame
    y: np.ndarray  # float64 [N]
    horizon_s: float

    def __len__(self) -> int:
        return len(self.frame)


def label_frame(frame: FeatureFrame, *, horizon_s: float) -> LabelledFrame:
    y = future_log_return(frame.ts, frame.mid, horizon_s=horizon_s, segment=frame.segment)
    return LabelledFrame(frame=frame, y=y, horizon_s=horizon_s)


def concat_labelled(parts: Sequence[LabelledFrame]) -> LabelledFrame:
    """Concatenate labelled frames (sorted by start time); segments are renumbered so none spans two parts."""
    parts = sorted((p for p in parts if len(p)), key=lambda p: int(p.frame.ts[0]))
    if not parts:
        raise ValueError("no data")
    first = parts[0].frame
    segs, offset = [], 0
    for p in parts:
        segs.append(p.frame.segment - p.frame.segment[0] + offset)
        offset = int(segs[-1][-1]) + 1
    frame = FeatureFrame(
        ts=np.concatenate([p.frame.ts for p in parts]),
        mid=np.concatenate([p.frame.mid for p in parts]),
        bid1=np.concatenate([p.frame.bid1 for p in parts]),
        ask1=np.concatenate([p.frame.ask1 for p in parts]),
        X=np.concatenate([p.frame.X for p in parts]),
        valid=np.concatenate([p.frame.valid for p in parts]),
        segment=np.concatenate(segs),
        names=first.names,
        config=first.config,
        version=first.version,
    )
    return LabelledFrame(frame=frame, y=np.concatenate([p.y for p in parts]), horizon_s=parts[0].horizon_s)


def window_ends(
    lf: LabelledFrame,
    *,
    window: int,
    t_start: int | None = None,
    t_end: int | None = None,
    stride: int = 1,
    require_label: bool = True,
) -> np.ndarray:
    """Indices e usable as window ends: rows e-W+1..e valid and in one segment, ts[e] in [t_start, t_end),
    and (if ``require_label``) the label known *before* t_end: ts[e] + H < t_end, so a training window's
    label never peeks into the following validation/test period."""
    f = lf.frame
    n = len(f)
    if n < window:
        return np.zeros(0, dtype=np.int64)
    bad = np.r_[0, np.cumsum(~f.valid)]
    e = np.arange(window - 1, n)
    ok = (bad[e + 1] - bad[e + 1 - window]) == 0
    ok &= f.segment[e] == f.segment[e - window + 1]
    t = f.ts[e]
    if t_start is not None:
        ok &= t >= t_start
    if t_end is not None:
        horizon_ms = int(round(lf.horizon_s * 1000)) if require_label else 0
        ok &= t + horizon_ms < t_end
    if require_label:
        ok &= np.isfinite(lf.y[e])
    out = e[ok]
    return out[::stride] if stride > 1 else out


@dataclass(frozen=True)
class WindowSet:
    """Samples for the sequence model, built lazily from one (normalised) feature matrix and window ends."""

    X: np.ndarray  # float32 [N, F]
    ends: np.ndarray  # int64 [S]
    y: np.ndarray  # float32 [S]
    ts: np.ndarray  # int64 [S]
    window: int
    market: np.ndarray | None = None  # int64 [S]: each sample's market id (a pooled model's embedding row)

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """[B, W, F] windows for the samples ``idx`` (oldest row first)."""
        rows = self.ends[idx][:, None] - np.arange(self.window - 1, -1, -1)[None, :]
        return self.X[rows]

    def windows(self) -> np.ndarray:
        return self.batch(np.arange(len(self)))

    def last_rows(self) -> np.ndarray:
        """The newest row of every window: what the non-sequence baselines see."""
        return self.X[self.ends]


def make_windowset(lf: LabelledFrame, X: np.ndarray, ends: np.ndarray, *, window: int) -> WindowSet:
    return WindowSet(
        X=X,
        ends=np.asarray(ends, dtype=np.int64),
        y=lf.y[ends].astype(np.float32),
        ts=lf.frame.ts[ends],
        window=window,
    )


def pooled_windowset(parts: Sequence[tuple[int, WindowSet]]) -> WindowSet:
    """Samples of many markets in one set: each market's rows (normalised with its own statistics) stacked,
    its window ends shifted accordingly and every sample tagged with its market id."""
    if not parts:
        raise ValueError("no market to pool")
    window = parts[0][1].window
    Xs, ends, ys, tss, ids = [], [], [], [], []
    offset = 0
    for market_id, ws in parts:
        if ws.window != window:
            raise ValueError("pooled window sets must share one window length")
        Xs.append(ws.X)
        ends.append(ws.ends + offset)
        ys.append(ws.y)
        tss.append(ws.ts)
        ids.append(np.full(len(ws), market_id, dtype=np.int64))
        offset += ws.X.shape[0]
    return WindowSet(
        X=np.concatenate(Xs),
        ends=np.concatenate(ends),
        y=np.concatenate(ys),
        ts=np.concatenate(tss),
        window=window,
        market=np.concatenate(ids),
    )


# ----------------------------------------------------------------------------- spike/crash periods


def find_spike_periods(
    ts: np.ndarray, mid: np.ndarray, *, window_s: float = 60.0, k: float = 4.0, pad_s: float = 600.0
) -> list[tuple[int, int]]:
    """Periods (start_ms, end_ms) around moves larger than k sigma: |log mid(t) - log mid(t - window)| > k *
    sigma of those window returns (robust, from the median absolute deviation); each hit is padded by
    ``pad_s`` each side and overlapping periods are merged."""
    ts = np.asarray(ts, dtype=np.int64)
    fin = np.isfinite(mid) & (mid > 0)
    ts, lm = ts[fin], np.log(mid[fin])
    if ts.shape[0] < 3:
        return []
    j = np.searchsorted(ts, ts - int(window_s * 1000), side="right") - 1
    has = j >= 0
    r = np.where(has, lm - lm[np.clip(j, 0, None)], np.nan)
    r_fin = r[np.isfinite(r)]
    # Robust sigma (MAD): the spikes must not inflate the yardstick they are measured with.
    sigma = 1.4826 * float(np.median(np.abs(r_fin - np.median(r_fin)))) if r_fin.size else 0.0
    if sigma <= 0:  # prices that mostly do not move (coarse ticks): fall back to the plain std
        sigma = float(np.std(r_fin)) if r_fin.size else 0.0
    if not np.isfinite(sigma) or sigma <= 0:
        return []
    hits = ts[np.abs(np.nan_to_num(r)) > k * sigma]
    if hits.shape[0] == 0:
        return []
    pad = int(pad_s * 1000)
    starts, ends = hits - pad - int(window_s * 1000), hits + pad
    periods: list[tuple[int, int]] = []
    cs, ce = int(starts[0]), int(ends[0])
    for s, e in zip(starts[1:], ends[1:], strict=True):
        if s <= ce:
            ce = max(ce, int(e))
        else:
            periods.append((cs, ce))
            cs, ce = int(s), int(e)
    periods.append((cs, ce))
    return periods


# ----------------------------------------------------------------------------- day files


@dataclass(frozen=True)
class DataTerms:
    """The price grid and fee rate a dataset declares: ``manage.py import_book`` records them in the files'
    metadata (``tick``: an Upbit table name or one fixed tick; ``fee_rate``); collector data declares
    neither, so Upbit's KRW tick table and the configured fee apply. Features measure the spread in these
    ticks and the backtest charges this fee."""

    tick: str | None = None
    fee_rate: float | None = None

    def tick_fn(self) -> TickFn:
        if self.tick is None:
            return krw_tick_size
        return importer.tick_fn(self.tick)  # the importer's own reading of its ``--tick`` spec

    def fee(self, default: float) -> float:
        return default if self.fee_rate is None else self.fee_rate


def data_terms(table: Any) -> DataTerms:
    """The terms a day-file table declares in its schema metadata (nothing: the defaults). A value that
    cannot be read is an error with the value, not a silent default."""
    meta = getattr(getattr(table, "schema", None), "metadata", None) or {}
    tick = meta.get(b"tick")
    fee = meta.get(b"fee_rate")
    fee_rate = None
    if fee:
        try:
            fee_rate = float(fee)
        except ValueError:
            raise ValueError(f"the data declares a fee rate that is not a number: {fee!r}") from None
        if not (0 <= fee_rate < 0.1):
            raise ValueError(f"the data declares a fee rate out of range: {fee_rate}")
    terms = DataTerms(tick=tick.decode() if tick else None, fee_rate=fee_rate)
    terms.tick_fn()  # an unknown tick spec fails here, with the spec
    return terms


def load_frame(
    root: str | os.PathLike[str],
    market: str,
    days: Sequence[dt.date],
    *,
    config: FeatureConfig | None = None,
    tick_fn: TickFn = krw_tick_size,
) -> FeatureFrame:
    """Features for consecutive day files of one market (gaps from the gap files split segments)."""
    book_t = dayfiles.read_days(root, "orderbook", market, days)
    if book_t.num_rows == 0:
        raise ValueError(f"no order-book data for {market} on {[d.isoformat() for d in days]}")
    trade_t = dayfiles.read_days(root, "trade", market, days)
    gap_t = dayfiles.read_days(root, "gap", market, days)
    gaps = None
    if gap_t.num_rows:
        gaps = np.column_stack([gap_t.column("ts_start").to_numpy(), gap_t.column("ts_end").to_numpy()])
    trades = dayfiles.trade_arrays(trade_t) if trade_t.num_rows else None
    terms = data_terms(book_t)
    if terms.tick is not None:
        tick_fn = terms.tick_fn()  # the data's own price grid wins over the caller's default
    return compute_features(dayfiles.book_arrays(book_t), trades, config=config, tick_fn=tick_fn, gaps=gaps)


@dataclass(frozen=True)
class TrainingData:
    """What nightly training works on: the recent days (walk-forward splits) and extra spike periods."""

    recent: LabelledFrame
    spikes: LabelledFrame | None
    days: tuple[dt.date, ...]
    spike_periods: tuple[tuple[int, int], ...]


def _frame_between(frame: FeatureFrame, start_ms: int, end_ms: int) -> FeatureFrame:
    lo = int(np.searchsorted(frame.ts, start_ms, side="left"))
    hi = int(np.searchsorted(frame.ts, end_ms, side="right"))
    return frame.slice(lo, hi)


def build_training_data(
    root: str | os.PathLike[str],
    market: str,
    *,
    end_day: dt.date | None = None,
    n_days: int = 5,
    spike_periods: Sequence[tuple[int, int]] = (),
    horizon_s: float = 10.0,
    config: FeatureConfig | None = None,
    tick_fn: TickFn = krw_tick_size,
) -> TrainingData:
    """The last ``n_days`` days with order-book files (up to ``end_day``) plus stored spike/crash periods
    from older days still on disk. Features are computed on whole days before slicing a spike period out, so
    its first rows have their full history; periods overlapping the recent days are skipped (no duplicate)."""
    days = [d for d in dayfiles.list_days(root, "orderbook", market) if end_day is None or d <= end_day]
    recent_days = days[-n_days:]
    if not recent_days:
        raise ValueError(f"no order-book day files for {market} under {root}")
    recent = label_frame(
        load_frame(root, market, recent_days, config=config, tick_fn=tick_fn), horizon_s=horizon_s
    )
    recent_start = int(recent.frame.ts[0])
    older = set(days) - set(recent_days)
    by_days: dict[tuple[dt.date, ...], list[tuple[int, int]]] = {}
    for start, end in spike_periods:
        if end >= recent_start:
            continue
        span = tuple(d for d in sorted(older) if dayfiles.day_of(start) <= d <= dayfiles.day_of(end))
        if span:
            by_days.setdefault(span, []).append((start, end))
    parts: list[LabelledFrame] = []
    used: list[tuple[int, int]] = []
    for span, periods in sorted(by_days.items()):
        frame = load_frame(root, market, list(span), config=config, tick_fn=tick_fn)
        lf = label_frame(frame, horizon_s=horizon_s)
        for start, end in periods:
            part = _frame_between(frame, start, end)
            if len(part) == 0:
                continue
            lo = int(np.searchsorted(frame.ts, start, side="left"))
            # Labels were computed on the whole day(s); cut those whose horizon leaves the period.
            y = lf.y[lo : lo + len(part)].copy()
            y[part.ts + int(horizon_s * 1000) > end] = np.nan
            parts.append(LabelledFrame(frame=part, y=y, horizon_s=horizon_s))
            used.append((start, end))
    spikes = concat_labelled(parts) if parts else None
    return TrainingData(recent=recent, spikes=spikes, days=tuple(recent_days), spike_periods=tuple(used))


def sample_book(book: dayfiles.BookArrays, *, every_ms: int) -> dayfiles.BookArrays:
    """The book in force on a regular grid (last update at or before each grid time), e.g. event-by-event
    books sampled at the collector's 5 Hz. Grid times start at the first update."""
    if len(book) == 0:
        return book
    grid = np.arange(int(book.ts[0]), int(book.ts[-1]) + 1, int(every_ms), dtype=np.int64)
    j = np.searchsorted(book.ts, grid, side="right") - 1
    return dayfiles.BookArrays(
        ts=grid, ask_px=book.ask_px[j], ask_sz=book.ask_sz[j], bid_px=book.bid_px[j], bid_sz=book.bid_sz[j]
    )
