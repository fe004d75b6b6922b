"""Vectorised order-book features per snapshot, using only book and trade data at or before each snapshot.

Trades are joined with ``np.searchsorted(trade_ts, snapshot_ts, side="right")`` (trade ts <= snapshot ts),
never nearest-in-time; every rolling quantity is a difference of prefix sums over ``(t - w, t]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from market.dayfiles import BookArrays, TradeArrays
from mlmodel.ticks import TickFn, krw_tick_size

FEATURE_VERSION = "ob-features-1"
BPS = 1e4
# A long series (days of snapshots) is featurised this many rows at a time: the wide per-level columns of a
# whole 5-day 5 Hz market would need ~4.5 GiB at once; the per-snapshot series still cover every row.
CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class FeatureConfig:
    """What to compute; saved with each model so serving builds exactly the same columns."""

    levels: int = 10
    depths: tuple[int, ...] = (1, 3, 5, 10)
    ofi_windows_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    trade_windows_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    vol_windows_s: tuple[float, ...] = (5.0, 30.0, 120.0)
    return_windows_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_gap_ms: int = 10_000  # consecutive snapshots further apart than this start a new segment

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        kw = dict(data)
        for key in ("depths", "ofi_windows_s", "trade_windows_s", "vol_windows_s", "return_windows_s"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @property
    def lookback_ms(self) -> int:
        """How much history the last row's features depend on (for computing features on a live tail)."""
        longest = max(
            (*self.ofi_windows_s, *self.trade_windows_s, *self.vol_windows_s, *self.return_windows_s)
        )
        return int(longest * 1000) + self.max_gap_ms


def _wname(w: float) -> str:
    return f"{w:g}s"


def feature_names(config: FeatureConfig) -> tuple[str, ...]:
    names = ["spread_ticks", "spread_bps", "microprice_bps"]
    for side in ("ask", "bid"):
        names += [f"{side}_px_bps_{k}" for k in range(1, config.levels + 1)]
        names += [f"{side}_logsz_{k}" for k in range(1, config.levels + 1)]
    names += [f"imb_{d}" for d in config.depths]
    names += [f"ofi_{_wname(w)}" for w in config.ofi_windows_s]
    for w in config.trade_windows_s:
        names += [f"tflow_{_wname(w)}", f"timb_{_wname(w)}", f"tcount_{_wname(w)}"]
    names += [f"rvol_bps_{_wname(w)}" for w in config.vol_windows_s]
    names += [f"ret_bps_{_wname(w)}" for w in config.return_windows_s]
    names += ["log_dt"]
    return tuple(names)


@dataclass(frozen=True)
class FeatureFrame:
    """Features of one book series plus the raw quantities labels and the backtester need."""

    ts: np.ndarray  # int64 [N]
    mid: np.ndarray  # float64 [N]
    bid1: np.ndarray  # float64 [N]
    ask1: np.ndarray  # float64 [N]
    X: np.ndarray  # float32 [N, F]
    valid: np.ndarray  # bool [N], every feature finite and the book two-sided
    segment: np.ndarray  # int64 [N], increments at every gap
    names: tuple[str, ...]
    config: FeatureConfig = field(default_factory=FeatureConfig)
    version: str = FEATURE_VERSION

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def slice(self, start: int, stop: int) -> FeatureFrame:
        s = slice(start, stop)
        return FeatureFrame(
            ts=self.ts[s],
            mid=self.mid[s],
            bid1=self.bid1[s],
            ask1=self.ask1[s],
            X=self.X[s],
            valid=self.valid[s],
            segment=self.segment[s],
            names=self.names,
            config=self.config,
            version=self.version,
        )

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


def segments(ts: np.ndarray, max_gap_ms: int, gaps: np.ndarray | None = None) -> np.ndarray:
    """Segment id per snapshot: a new segment starts after a time jump > max_gap_ms or a recorded gap.

    ``gaps`` is an optional [K, 2] array of (ts_start, ts_end) from the collector's gap files; a snapshot
    pair (i-1, i) whose interval overlaps a gap is split.
    """
    n = ts.shape[0]
    brk = np.zeros(n, dtype=bool)
    if n > 1:
        brk[1:] = np.diff(ts) > max_gap_ms
        if gaps is not None and len(gaps):
            g = np.asarray(gaps, dtype=np.int64).reshape(-1, 2)
            # Pair (i-1, i) overlaps a gap [s, e] iff s < ts[i] and e > ts[i-1].
            prev, cur = ts[:-1], ts[1:]
            order = np.argsort(g[:, 0])
            gs, ge = g[order, 0], np.maximum.accumulate(g[order, 1])
            k = np.searchsorted(gs, cur, side="left") - 1  # last gap starting before ts[i]
            hit = (k >= 0) & (ge[np.clip(k, 0, None)] > prev)
            brk[1:] |= hit
    return np.cumsum(brk).astype(np.int64)


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0] + 1, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(x, out=out[1:])
    return out


def _fill_levels(
    px: np.ndarray, sz: np.ndarray, levels: int, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Take ``levels`` levels; a missing level gets size 0 and the previous level's price plus ``step``
    (one tick away from the touch), so relative prices stay monotone when the book is thin."""
    n, have = px.shape
    out_px = np.full((n, levels), np.nan)
    out_sz = np.zeros((n, levels))
    k = min(have, levels)
    out_px[:, :k] = px[:, :k]
    out_sz[:, :k] = np.nan_to_num(sz[:, :k], nan=0.0)
    for j in range(1, levels):  # few columns; rows are vectorised
        col = out_px[:, j]
        miss = ~np.isfinite(col)
        if miss.any():
            col[miss] = out_px[miss, j - 1] + step[miss]
    return out_px, out_sz


def compute_features(
    book: BookArrays,
    trades: TradeArrays | None = None,
    *,
    config: FeatureConfig | None = None,
    tick_fn: TickFn = krw_tick_size,
    gaps: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    rows_book: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> FeatureFrame:
    """Features for every snapshot of ``book``; row i uses only snapshots <= i and trades with ts <= ts[i].

    ``rows`` (sorted indices) limits the output to those snapshots: the per-snapshot series the rolling
    windows need (level 1, OFI, returns, prefix sums) still cover the whole input, but the wide per-level
    columns are computed for the selected rows only (live serving: only the newly arrived snapshots). With
    ``rows_book`` (the selected rows' ask_px, ask_sz, bid_px, bid_sz with all levels) ``book`` only needs
    level 1 (its first column) for every row."""
    cfg = config or FeatureConfig()
    if rows is None and rows_book is None and len(book.ts) > CHUNK_ROWS:
        parts = [
            compute_features(
                book,
                trades,
                config=cfg,
                tick_fn=tick_fn,
                gaps=gaps,
                rows=np.arange(lo, min(lo + CHUNK_ROWS, len(book.ts))),
            )
            for lo in range(0, len(book.ts), CHUNK_ROWS)
        ]

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return replace(
            parts[0],
            ts=joined("ts"),
            mid=joined("mid"),
            bid1=joined("bid1"),
            ask1=joined("ask1"),
            X=joined("X"),
            valid=joined("valid"),
            segment=joined("segment"),
        )
    declared_gap = getattr(book, "segment_gap_ms", None)
    if declared_gap and declared_gap != cfg.max_gap_ms:
        # Imported data declares its own segment gap (import_book --segment-gap); the model keeps it.
        cfg = replace(cfg, max_gap_ms=int(declared_gap))
    ts = np.asarray(book.ts, dtype=np.int64)
    n = ts.shape[0]
    if n > 1 and np.any(np.diff(ts) < 0):
        raise ValueError("book timestamps must be non-decreasing")
    sel: Any = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
    ask_px_in = np.asarray(book.ask_px, dtype=np.float64)
    bid_px_in = np.asarray(book.bid_px, dtype=np.float64)
    ask_sz_in = np.asarray(book.ask_sz, dtype=np.float64)
    bid_sz_in = np.asarray(book.bid_sz, dtype=np.float64)
    if ask_px_in.shape[1] == 0:
        raise ValueError("book has no levels")
    # An absent level may be stored as NaN or as price/size 0: normalise both to "missing".
    a1 = np.where((ask_px_in[:, 0] > 0) & (ask_sz_in[:, 0] > 0), ask_px_in[:, 0], np.nan)
    b1 = np.where((bid_px_in[:, 0] > 0) & (bid_sz_in[:, 0] > 0), bid_px_in[:, 0], np.nan)
    qa1 = np.nan_to_num(ask_sz_in[:, 0], nan=0.0)
    qb1 = np.nan_to_num(bid_sz_in[:, 0], nan=0.0)
    two_sided = np.isfinite(a1) & np.isfinite(b1) & (a1 > b1) & (qa1 > 0) & (qb1 > 0)
    mid = np.where(two_sided, (a1 + b1) / 2.0, np.nan)
    seg = segments(ts, cfg.max_gap_ms, gaps)
    same_seg = np.zeros(n, dtype=bool)
    same_seg[1:] = seg[1:] == seg[:-1]

    # Per-row (wide) columns: only the selected rows.
    ts_s, a1_s, b1_s, qa1_s, qb1_s, mid_s = ts[sel], a1[sel], b1[sel], qa1[sel], qb1[sel], mid[sel]
    if rows_book is None:
        ask_px_sel, ask_sz_raw, bid_px_sel, bid_sz_raw = (
            ask_px_in[sel],
            ask_sz_in[sel],
            bid_px_in[sel],
            bid_sz_in[sel],
        )
    else:
        ask_px_sel, ask_sz_raw, bid_px_sel, bid_sz_raw = (np.asarray(m, dtype=np.float64) for m in rows_book)
    ask_px_raw = np.where((ask_px_sel > 0) & (ask_sz_raw > 0), ask_px_sel, np.nan)
    bid_px_raw = np.where((bid_px_sel > 0) & (bid_sz_raw > 0), bid_px_sel, np.nan)
    tick = tick_fn(mid_s)
    cols: list[np.ndarray] = []
    spread = a1_s - b1_s
    cols.append(spread / tick)
    cols.append(spread / mid_s * BPS)
    micro = (a1_s * qb1_s + b1_s * qa1_s) / np.where(qa1_s + qb1_s > 0, qa1_s + qb1_s, np.nan)
    cols.append((micro - mid_s) / mid_s * BPS)

    L = cfg.levels
    ask_px, ask_sz = _fill_levels(ask_px_raw, ask_sz_raw, L, step=tick)
    bid_px, bid_sz = _fill_levels(bid_px_raw, bid_sz_raw, L, step=-tick)
    mid_col = mid_s[:, None]
    cols.extend(((ask_px - mid_col) / mid_col * BPS).T)
    cols.extend(np.log1p(ask_sz).T)
    cols.extend(((mid_col - bid_px) / mid_col * BPS).T)
    cols.extend(np.log1p(bid_sz).T)

    cum_a = np.cumsum(ask_sz, axis=1)
    cum_b = np.cumsum(bid_sz, axis=1)
    for d in cfg.depths:
        k = min(d, L) - 1
        tot = cum_a[:, k] + cum_b[:, k]
        cols.append(np.where(tot > 0, (cum_b[:, k] - cum_a[:, k]) / np.where(tot > 0, tot, 1.0), 0.0))

    # Cont-Kukanov-Stoikov order-flow imbalance e_n at level 1, zero across gaps and one-sided books.
    e = np.zeros(n)
    if n > 1:
        pb, pb0 = b1[1:], b1[:-1]
        pa, pa0 = a1[1:], a1[:-1]
        qb, qb0 = qb1[1:], qb1[:-1]
        qa, qa0 = qa1[1:], qa1[:-1]
        en = (pb >= pb0) * qb - (pb <= pb0) * qb0 - (pa <= pa0) * qa + (pa >= pa0) * qa0
        ok = same_seg[1:] & two_sided[1:] & two_sided[:-1]
        e[1:] = np.where(ok, en, 0.0)
    e_cum = _prefix(e)
    depth1 = np.where(two_sided, (qa1 + qb1) / 2.0, 0.0)
    d_cum = _prefix(depth1)
    idx1 = np.arange(1, n + 1)[sel]
    window_lo: dict[float, np.ndarray] = {}

    # Book-based windows never reach back past the start of the snapshot's segment (stale pre-gap data).
    seg_first = np.r_[0, np.nonzero(np.diff(seg))[0] + 1][seg[sel]] if n else np.zeros(0, dtype=np.int64)

    def lo_of(w: float) -> np.ndarray:
        if w not in window_lo:
            window_lo[w] = np.maximum(np.searchsorted(ts, ts_s - int(w * 1000), side="right"), seg_first)
        return window_lo[w]

    def mean_depth(w: float) -> np.ndarray:
        lo = lo_of(w)
        cnt = idx1 - lo
        return (d_cum[idx1] - d_cum[lo]) / np.maximum(cnt, 1)

    for w in cfg.ofi_windows_s:
        lo = lo_of(w)
        md = mean_depth(w)
        cols.append(np.where(md > 0, (e_cum[idx1] - e_cum[lo]) / np.where(md > 0, md, 1.0), 0.0))

    if trades is not None and len(trades):
        t_ts = np.asarray(trades.ts, dtype=np.int64)
        if np.any(np.diff(t_ts) < 0):
            order = np.argsort(t_ts, kind="stable")
            t_ts = t_ts[order]
            vol = np.asarray(trades.volume, dtype=np.float64)[order]
            side = np.asarray(trades.side, dtype=np.float64)[order]
        else:
            vol = np.asarray(trades.volume, dtype=np.float64)
            side = np.asarray(trades.side, dtype=np.float64)
        sv_cum = _prefix(side * vol)
        v_cum = _prefix(vol)
        hi = np.searchsorted(t_ts, ts_s, side="right")  # trades with ts <= snapshot ts
    else:
        t_ts = np.zeros(0, dtype=np.int64)
        sv_cum = v_cum = np.zeros(1)
        hi = np.zeros(ts_s.shape[0], dtype=np.int64)
    for w in cfg.trade_windows_s:
        tlo = np.searchsorted(t_ts, ts_s - int(w * 1000), side="right")
        sv = sv_cum[hi] - sv_cum[tlo]
        v = v_cum[hi] - v_cum[tlo]
        md = mean_depth(w)
        cols.append(np.where(md > 0, sv / np.where(md > 0, md, 1.0), 0.0))
        cols.append(np.where(v > 0, sv / np.where(v > 0, v, 1.0), 0.0))
        cols.append(np.log1p((hi - tlo).astype(np.float64)))

    r = np.zeros(n)
    if n > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            rr = np.log(mid[1:] / mid[:-1])
        r[1:] = np.where(same_seg[1:] & np.isfinite(rr), rr, 0.0)
    r2_cum = _prefix(r * r)
    r_cum = _prefix(r)
    for w in cfg.vol_windows_s:
        lo = lo_of(w)
        cols.append(np.sqrt(np.maximum(r2_cum[idx1] - r2_cum[lo], 0.0)) * BPS)  # prefix sums may dip below 0
    for w in cfg.return_windows_s:
        # Return since the last snapshot at or before t - w: r over snapshots lo..i (r[lo] spans lo-1 -> lo).
        lo = lo_of(w)
        cols.append((r_cum[idx1] - r_cum[lo]) * BPS)

    dt = np.zeros(n)
    if n > 1:
        dt[1:] = np.where(same_seg[1:], np.diff(ts), 0)
    cols.append(np.log1p(dt[sel] / 1000.0))

    X = np.column_stack(cols).astype(np.float32)
    valid = two_sided[sel] & np.isfinite(X).all(axis=1)
    names = feature_names(cfg)
    assert X.shape[1] == len(names), (X.shape, len(names))
    return FeatureFrame(
        ts=ts_s,
        mid=mid_s,
        bid1=b1_s.copy(),
        ask1=a1_s.copy(),
        X=X,
        valid=valid,
        segment=seg[sel],
        names=names,
        config=cfg,
    )
