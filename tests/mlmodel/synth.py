"""A small seeded order-book generator for the ML tests: a latent order-flow signal drives the L1 queue
imbalance, trade signs and (with a lag) the mid, so short-horizon returns are learnable from the book."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from market.dayfiles import BookArrays, TradeArrays


def synthetic_market(
    n: int,
    *,
    seed: int = 0,
    dt_ms: int = 200,
    levels: int = 10,
    start_ms: int = 1_700_000_000_000,
    price: float = 1000.0,
    tick: float = 1.0,
    signal_strength: float = 1.0,
    gap_at: int | None = None,
    gap_ms: int = 60_000,
) -> tuple[BookArrays, TradeArrays]:
    rng = np.random.default_rng(seed)
    ts = start_ms + np.arange(n, dtype=np.int64) * dt_ms + rng.integers(0, dt_ms // 4, n)
    ts.sort()
    if gap_at is not None:
        ts[gap_at:] += gap_ms
    s = np.zeros(n)
    eps = rng.normal(0, 0.3, n)
    for i in range(1, n):  # AR(1) latent pressure, half-life of a few seconds
        s[i] = 0.97 * s[i - 1] + eps[i]
    # The mid follows the pressure: a one-tick move with probability growing with |s|, in its direction.
    p_move = np.clip(0.04 * signal_strength * np.abs(s), 0, 0.5)
    move = (rng.random(n) < p_move) * np.sign(s) * tick
    noise = (rng.random(n) < 0.02) * rng.choice([-tick, tick], n)
    bid1 = np.round((price + np.cumsum(move + noise)) / tick) * tick
    bid1 = np.maximum(bid1, 10 * tick)
    spread = np.where(rng.random(n) < 0.9, 1, 2) * tick
    ask1 = bid1 + spread
    steps = np.arange(levels) * tick
    ask_px = ask1[:, None] + steps[None, :]
    bid_px = bid1[:, None] - steps[None, :]
    base = rng.lognormal(3.0, 0.5, (n, levels))
    tilt = np.exp(0.6 * np.tanh(s / 2))[:, None]
    ask_sz = np.round(base / tilt * rng.lognormal(0, 0.2, (n, levels)), 4)
    bid_sz = np.round(rng.lognormal(3.0, 0.5, (n, levels)) * tilt * rng.lognormal(0, 0.2, (n, levels)), 4)
    trade_rows = np.nonzero(rng.random(n) < 0.4)[0]
    t_ts = ts[trade_rows] - rng.integers(0, dt_ms // 2, trade_rows.size)
    side = np.where(rng.random(trade_rows.size) < 1 / (1 + np.exp(-s[trade_rows])), 1, -1).astype(np.int8)
    t_px = np.where(side > 0, ask1[trade_rows], bid1[trade_rows])
    t_vol = np.round(rng.lognormal(1.0, 0.8, trade_rows.size), 4)
    order = np.argsort(t_ts, kind="stable")
    return (
        BookArrays(ts=ts, ask_px=ask_px, ask_sz=ask_sz, bid_px=bid_px, bid_sz=bid_sz),
        TradeArrays(ts=t_ts[order], price=t_px[order], volume=t_vol[order], side=side[order]),
    )


Levels = Sequence[Sequence[tuple[float, float]]]


def book_from_rows(ts: Sequence[int], asks: Levels, bids: Levels, levels: int = 3) -> BookArrays:
    """A hand-written book: per snapshot a list of (price, size) per side, best first."""
    n = len(ts)
    ap, asz, bp, bsz = (np.full((n, levels), np.nan) for _ in range(4))
    for i in range(n):
        for j, (p, q) in enumerate(asks[i]):
            ap[i, j], asz[i, j] = p, q
        for j, (p, q) in enumerate(bids[i]):
            bp[i, j], bsz[i, j] = p, q
    return BookArrays(ts=np.asarray(ts, dtype=np.int64), ask_px=ap, ask_sz=asz, bid_px=bp, bid_sz=bsz)


def column_batch(
    book: BookArrays,
    trades: TradeArrays,
    lo: int,
    hi: int,
    t_lo: int | None = None,
    t_hi: int | None = None,
    *,
    side_names: bool = False,
) -> dict[str, Any]:
    """Snapshots lo..hi-1 in the per-market column batch format, with trades t_lo..t_hi-1 (default: those
    after the previous snapshot up to the last one); sides as +1/-1 or, with ``side_names``, "BID"/"ASK"."""
    if t_lo is None:
        t_lo = int(np.searchsorted(trades.ts, book.ts[lo - 1], side="right")) if lo else 0
    if t_hi is None:
        t_hi = int(np.searchsorted(trades.ts, book.ts[hi - 1], side="right"))
    sides = trades.side[t_lo:t_hi]
    return {
        "ts": book.ts[lo:hi].tolist(),
        "ask_px": book.ask_px[lo:hi].tolist(),
        "ask_sz": book.ask_sz[lo:hi].tolist(),
        "bid_px": book.bid_px[lo:hi].tolist(),
        "bid_sz": book.bid_sz[lo:hi].tolist(),
        "trades": {
            "ts": trades.ts[t_lo:t_hi].tolist(),
            "price": trades.price[t_lo:t_hi].tolist(),
            "volume": trades.volume[t_lo:t_hi].tolist(),
            "side": ["BID" if s > 0 else "ASK" for s in sides] if side_names else sides.tolist(),
        },
    }


def random_predictor(
    *, window: int = 20, seed: int = 0, cfg: Any = None, hidden: int = 8, layers: int = 1
) -> Any:
    """An untrained LSTM predictor (seeded weights, a random normalisation) for serving tests."""
    import torch

    from mlmodel.dataset import Normalizer
    from mlmodel.features import FeatureConfig, feature_names
    from mlmodel.inference import Predictor
    from mlmodel.nets import LSTMConfig, LSTMRegressor
    from mlmodel.training import ModelBundle, TrainConfig

    cfg = cfg or FeatureConfig()
    names = feature_names(cfg)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bundle = ModelBundle(
        model=LSTMRegressor(LSTMConfig(n_features=len(names), hidden=hidden, layers=layers)),
        train_config=TrainConfig(window=window, hidden=hidden, layers=layers),
        normalizer=Normalizer(mean=rng.normal(size=len(names)), std=rng.uniform(0.5, 3.0, size=len(names))),
        feature_config=cfg,
        feature_names=names,
        horizon_s=10.0,
        y_scale=1e-3,
    )
    return Predictor(bundle, device="cpu")
