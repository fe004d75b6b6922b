"""Labels: the future mid log-return at a horizon H seconds (by time), and an optional 3-class label."""

from __future__ import annotations

import numpy as np

DOWN, FLAT, UP = 0, 1, 2
INVALID_CLASS = -1


def future_index(ts: np.ndarray, horizon_ms: int) -> np.ndarray:
    """Index of the book in force at ts + H: the last snapshot with ts <= t + H."""
    return np.searchsorted(ts, ts + int(horizon_ms), side="right") - 1


def future_log_return(
    ts: np.ndarray,
    mid: np.ndarray,
    *,
    horizon_s: float,
    segment: np.ndarray | None = None,
) -> np.ndarray:
    """log(mid(t + H) / mid(t)) per snapshot; NaN where t + H is past the data or past the end of the
    snapshot's segment (i.e. the horizon crosses a gap), or where either mid is missing."""
    ts = np.asarray(ts, dtype=np.int64)
    n = ts.shape[0]
    out = np.full(n, np.nan)
    if n == 0:
        return out
    h = int(round(horizon_s * 1000))
    if h <= 0:
        raise ValueError("horizon must be positive")
    seg = np.zeros(n, dtype=np.int64) if segment is None else np.asarray(segment, dtype=np.int64)
    # Last timestamp of each snapshot's segment: the horizon must end inside the recorded stretch.
    ends = np.nonzero(np.r_[seg[1:] != seg[:-1], True])[0]
    starts = np.r_[0, ends[:-1] + 1]
    last_of_seg = np.repeat(ts[ends], ends - starts + 1)
    j = future_index(ts, h)
    ok = (ts + h <= last_of_seg) & (j >= 0)
    jj = np.clip(j, 0, n - 1)
    ok &= seg[jj] == seg
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(mid[jj] / mid)
    out[ok] = r[ok]
    out[~np.isfinite(out)] = np.nan
    return out


def three_class(returns: np.ndarray, *, dead_band: float | np.ndarray) -> np.ndarray:
    """DOWN (0) / FLAT (1) / UP (2) with |r| <= dead_band (a scalar or one per sample) as FLAT;
    INVALID_CLASS (-1) where r is NaN."""
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(r.shape, INVALID_CLASS, dtype=np.int64)
    fin = np.isfinite(r)
    out[fin] = FLAT
    out[fin & (r > dead_band)] = UP
    out[fin & (r < -dead_band)] = DOWN
    return out
