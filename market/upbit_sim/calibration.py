"""Long-run statistics of the synthetic model, unpaced: spread in ticks, one-minute volatility against the
target and the depth shape hour by hour, for each market class (used by the drift test and the bench)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .synthetic import NANO, SyntheticMarket, SyntheticParams, _tick_up

# One market per price class (KRW, tick): a 150M coin with a 1,000 tick ... a sub-10 KRW coin.
MARKET_CLASSES: dict[str, float] = {
    "KRW-BTC": 150_000_000.0,  # tick 1,000 (0.0007 % of the price)
    "KRW-ETH": 5_000_000.0,  # tick 1,000 (0.02 %)
    "KRW-SOL": 250_000.0,  # tick 100 (0.04 %)
    "KRW-XRP": 3_000.0,  # tick 1 (0.03 %)
    "KRW-DOGE": 300.0,  # tick 1 (0.33 %)
    "KRW-SUB10": 5.0,  # tick 0.01 (0.2 %)
}


def soak_hours(code: str, *, moves: float = 30.0, params: SyntheticParams | None = None) -> float:
    """Model hours for a long-run check of ``code``: at least 6, and long enough for about ``moves``
    one-tick moves of the mid at its volatility target. A large-tick mid moves rarely (KRW-DOGE's target is
    0.135 ticks a minute, one tick move an hour), so 6 hours hold a handful of moves and their one-minute
    std is off by +-40 % by chance alone; 30 moves bring that to about +-9 %."""
    prm = params or SyntheticParams()
    price = MARKET_CLASSES.get(code, prm.start_price or 10_000.0)
    ticks_per_min = prm.target_vol * price / (_tick_up(int(round(price * NANO))) / NANO)
    return max(6.0, math.ceil(moves / (60.0 * ticks_per_min**2)))


@dataclass(frozen=True)
class SoakStats:
    code: str
    seed: int
    hours: float
    target_vol: float
    minute_vol: float  # std of one-minute log mid returns over the run
    spread_ticks: np.ndarray  # spread in ticks, sampled once a second
    depth_by_hour: np.ndarray  # mean KRW within the first 10 published levels (both sides), per hour
    events: int

    @property
    def spread_median(self) -> float:
        return float(np.median(self.spread_ticks))

    @property
    def spread_p99(self) -> float:
        return float(np.percentile(self.spread_ticks, 99))

    @property
    def vol_ratio(self) -> float:
        return self.minute_vol / self.target_vol

    @property
    def depth_ratio(self) -> float:
        """Depth in the last hour over depth in the first (1.0: a stable book shape)."""
        return float(self.depth_by_hour[-1] / self.depth_by_hour[0])


def market_soak(
    *, code: str, hours: float, seed: int = 1, params: SyntheticParams | None = None
) -> SoakStats:
    """Run one market unpaced for ``hours`` of model time, sampling the book once a second."""
    prm = params or SyntheticParams()
    if code in MARKET_CLASSES and not prm.start_price:
        prm = replace(prm, start_price=MARKET_CLASSES[code])
    m = SyntheticMarket(code, seed=seed, start_ms=0, params=prm)
    seconds = int(hours * 3600)
    spread = np.empty(seconds)
    depth = np.empty(seconds)
    mids = [m.mid]
    for s in range(1, seconds + 1):
        m.run_until(s * 1000)
        ba, bb = m.best_ask, m.best_bid
        spread[s - 1] = (ba - bb) / _tick_up(bb)
        book = m.book(10)
        depth[s - 1] = sum(p * v for p, v in book.asks) + sum(p * v for p, v in book.bids)
        if s % 60 == 0:
            mids.append(m.mid)
    per_hour = [depth[i : i + 3600].mean() for i in range(0, seconds, 3600) if seconds - i >= 1800]
    return SoakStats(
        code=code,
        seed=seed,
        hours=hours,
        target_vol=prm.target_vol,
        minute_vol=float(np.diff(np.log(mids)).std()),
        spread_ticks=spread,
        depth_by_hour=np.asarray(per_hour or [depth.mean()]),
        events=m.events,
    )


def minute_tick_moves(*, depth_scale: float, code: str, hours: float, seed: int) -> np.ndarray:
    """One-minute mid changes in ticks over ``hours`` of model time at depth scale ``depth_scale``."""
    prm = replace(SyntheticParams(depth_scale=depth_scale), start_price=MARKET_CLASSES.get(code, 0.0))
    m = SyntheticMarket(code, seed=seed, start_ms=0, params=prm)
    tick = _tick_up(m.best_bid) / NANO
    mids = [m.mid]
    for k in range(1, int(hours * 60) + 1):
        m.run_until(k * 60_000)
        mids.append(m.mid)
    return np.diff(mids) / tick


@dataclass(frozen=True)
class CalibrationPoint:
    """One row of ``synthetic._VOL_CALIBRATION``: the pooled std of one-minute mid changes at depth scale
    ``depth_scale``, in ticks, over ``seeds`` runs of ``hours`` each; ``moves`` counts the minutes whose mid
    changed (the information behind the figure: a large-tick mid moves rarely, so few moves = a noisy row)."""

    depth_scale: float
    ticks: float
    hours: float
    seeds: int
    moves: int


def calibration_point(
    *, depth_scale: float, hours: float, seeds: Sequence[int] = (1, 2, 3), code: str = "KRW-XRP"
) -> CalibrationPoint:
    """Measure one calibration row: the model at depth scale ``depth_scale`` on ``code`` (KRW-XRP: a 1-KRW
    tick at 3,000 KRW, no tick-band boundary nearby; KRW-BTC for D < 1), unpaced, for every seed; the
    variance is pooled over the seeds (mean of squares about the pooled mean)."""
    moves = np.concatenate(
        [minute_tick_moves(depth_scale=depth_scale, code=code, hours=hours, seed=s) for s in seeds]
    )
    return CalibrationPoint(
        depth_scale=depth_scale,
        ticks=float(moves.std()),
        hours=hours,
        seeds=len(seeds),
        moves=int(np.count_nonzero(moves)),
    )


@dataclass(frozen=True)
class SignalReport:
    """How predictable the next ``horizon_s`` seconds are from the book's imbalance now and over the last
    ``lookback_s`` seconds (out of sample)."""

    strength: float
    horizon_s: float
    r2: float  # out-of-sample R^2 of a ridge on the imbalance features
    tradable_share: float  # share of samples whose |predicted return| exceeds the round-trip cost
    net_per_trade: float  # mean realised return (in the predicted direction) minus cost on those samples
    minute_vol: float  # realised one-minute volatility with the signal on


def _imbalance_features(asks: np.ndarray, bids: np.ndarray, *, lookback: int) -> np.ndarray:
    """Imbalance of the best 1, 3, 5 and 10 levels now, and the highest and lowest imbalance of the levels
    behind the best three (where an announced jump's wall stands) over the last ``lookback`` samples."""
    cols = []
    for n in (1, 3, 5, 10):
        a, b = asks[:, :n].sum(axis=1), bids[:, :n].sum(axis=1)
        cols.append((b - a) / np.maximum(a + b, 1e-12))
    a, b = asks[:, 3:].sum(axis=1), bids[:, 3:].sum(axis=1)
    deep = (b - a) / np.maximum(a + b, 1e-12)
    past = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([np.full(lookback - 1, deep[0]), deep]), lookback
    )
    cols += [past.max(axis=1), past.min(axis=1)]
    return np.column_stack(cols)


def signal_report(
    *,
    code: str = "KRW-BTC",
    strength: float,
    hours: float = 2.0,
    horizon_s: float = 5.0,
    lookback_s: float = 6.0,
    step_ms: int = 200,
    seed: int = 1,
    fee_round_trip: float = 0.001,
    ridge: float = 1e-3,
) -> SignalReport:
    """Run one market unpaced with ``signal_strength=strength`` (the other ``SyntheticParams`` at their
    defaults: the demo's announced jumps), sampled every ``step_ms``; fit a ridge regression of the next
    ``horizon_s`` log mid return on order-book imbalance (levels 1, 3, 5, 10 now; the deep book's extremes
    over the last ``lookback_s``) over the first half, score the second half. A "trade" is a sample whose
    |prediction| beats Upbit's fees both ways plus the spread."""
    prm = SyntheticParams(signal_strength=strength, start_price=MARKET_CLASSES.get(code, 0.0))
    m = SyntheticMarket(code, seed=seed, start_ms=0, params=prm)
    n = int(hours * 3600_000 / step_ms)
    h = max(1, int(round(horizon_s * 1000 / step_ms)))
    asks = np.empty((n, 10))
    bids = np.empty((n, 10))
    mid = np.empty(n)
    spread = np.empty(n)
    for s in range(n):
        m.run_until((s + 1) * step_ms)
        book = m.book(10)
        asks[s] = [v for _, v in book.asks]
        bids[s] = [v for _, v in book.bids]
        mid[s] = m.mid
        spread[s] = (m.best_ask - m.best_bid) / NANO / m.mid
    x = _imbalance_features(asks, bids, lookback=max(1, int(round(lookback_s * 1000 / step_ms))))
    y = np.log(mid[h:] / mid[:-h])
    x, cost = x[:-h], fee_round_trip + spread[:-h]
    half = len(y) // 2
    xa = np.column_stack([np.ones(len(x)), x])
    a, b = xa[:half], y[:half]
    w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]) * np.var(b), a.T @ b)
    pred, real, c = xa[half:] @ w, y[half:], cost[half:]
    r2 = 1.0 - float(np.mean((real - pred) ** 2) / np.var(real))
    go = np.abs(pred) > c
    net = float(np.mean(np.sign(pred[go]) * real[go] - c[go])) if go.any() else 0.0
    per_minute = 60_000 // step_ms
    minute = mid[per_minute - 1 :: per_minute]
    return SignalReport(
        strength=strength,
        horizon_s=horizon_s,
        r2=r2,
        tradable_share=float(go.mean()),
        net_per_trade=net,
        minute_vol=float(np.diff(np.log(minute)).std()),
    )
