"""Backtester: replays recorded books, applies the auto-trading rule to predictions, fills market orders by
walking the book at arrival (after latency), charges fees on both sides and tracks cash and position."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from market.dayfiles import BookArrays
from market.upbit.protocol import FEE_RATE
from mlmodel.rule import HORIZON_EXIT, exit_reason
from mlmodel.ticks import TickFn, krw_tick_size, round_to_tick

YEAR_S = 365.0 * 24 * 3600  # crypto trades every day


@dataclass(frozen=True)
class BacktestConfig:
    threshold: float = 0.0005  # the user's profit threshold as a fraction (0.05 %)
    fee_rate: float = float(FEE_RATE)  # Upbit KRW fee per side
    spread_cost_factor: float = 0.5  # cost includes this fraction of the relative spread (0.5 = half-spread)
    latency_ms: int = 100  # decision -> order arrival at the exchange
    order_krw: float = 100_000.0  # KRW spent per buy
    initial_cash: float = 1_000_000.0
    max_position_krw: float | None = None  # cost basis cap; None = one order (buy only when flat)
    min_total_krw: float = 5_000.0  # Upbit minimum order total
    cooldown_ms: int = 5_000  # no new order until this long after the previous fill
    volume_decimals: int = 8
    limit_ticks: int | None = None  # None = market order; k = marketable limit capped k ticks past the touch
    close_at_end: bool = True
    sharpe_bar_s: float = 60.0
    # The prediction horizon: a held lot is sold once this long after its buy when the prediction no longer
    # exceeds the edge (``mlmodel.rule.exit_reason``, the product's rule). None = the sell signal only.
    horizon_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fill:
    decision_ts: int
    arrival_ts: int
    side: str  # "buy" / "sell"
    volume: float
    avg_price: float
    funds: float  # KRW exchanged before fees
    fee: float
    prediction: float
    cost: float  # threshold-free round-trip cost used by the rule at decision time
    reason: str  # "signal" (buy or sell signal) / "horizon" (horizon exit) / "end"
    levels_walked: int


@dataclass(frozen=True)
class Rejection:
    decision_ts: int
    side: str
    reason: str  # "under_min_total" / "insufficient_funds" / "no_liquidity"


@dataclass
class BacktestResult:
    fills: list[Fill]
    rejections: list[Rejection]
    equity_ts: np.ndarray  # int64
    equity: np.ndarray  # float64, cash + position marked at the best bid
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, max_points: int = 2000) -> dict[str, Any]:
        step = max(1, len(self.equity) // max_points)
        return {
            "metrics": self.metrics,
            "fills": [asdict(f) for f in self.fills],
            "rejections": [asdict(r) for r in self.rejections],
            "equity_ts": self.equity_ts[::step].tolist(),
            "equity": self.equity[::step].tolist(),
        }


def _floor_dec(x: float, decimals: int) -> float:
    scale = 10.0**decimals
    # Round away float noise first (x * scale can land a few ulps below an integer), then floor.
    return math.floor(round(x * scale, 3)) / scale


def walk_buy(
    px: np.ndarray, sz: np.ndarray, budget: float, *, decimals: int, cap: float | None = None
) -> tuple[float, float, int]:
    """Spend up to ``budget`` KRW on ask levels (best first, prices <= cap) -> (volume, funds, levels)."""
    vol = funds = 0.0
    used = 0
    for p, q in zip(px.tolist(), sz.tolist(), strict=True):  # Python floats: fast scalar math
        if not (math.isfinite(p) and math.isfinite(q)) or q <= 0:
            continue
        if cap is not None and p > cap + 1e-12:
            break
        remaining = budget - funds
        if remaining <= 0:
            break
        take = _floor_dec(min(q, remaining / p), decimals)
        if take <= 0:
            break
        vol = round(vol + take, decimals)  # volumes live on the 1e-8 grid
        funds += take * p
        used += 1
    return vol, funds, used


def walk_sell(
    px: np.ndarray, sz: np.ndarray, volume: float, *, decimals: int, floor: float | None = None
) -> tuple[float, float, int]:
    """Sell up to ``volume`` against bid levels (best first, prices >= floor). -> (volume, funds, levels)."""
    vol = funds = 0.0
    used = 0
    for p, q in zip(px.tolist(), sz.tolist(), strict=True):  # Python floats: fast scalar math
        if not (math.isfinite(p) and math.isfinite(q)) or q <= 0:
            continue
        if floor is not None and p < floor - 1e-12:
            break
        remaining = _floor_dec(volume - vol, decimals)
        if remaining <= 0:
            break
        take = min(q, remaining)
        vol = round(vol + take, decimals)  # volumes live on the 1e-8 grid
        funds += take * p
        used += 1
    return vol, funds, used


def decision_costs(book: BookArrays, idx: np.ndarray, config: BacktestConfig) -> np.ndarray:
    """Round-trip cost per decision: both fees plus ``spread_cost_factor`` x the relative spread."""
    a1, b1 = book.ask_px[idx, 0], book.bid_px[idx, 0]
    mid = (a1 + b1) / 2.0
    return 2.0 * config.fee_rate + config.spread_cost_factor * (a1 - b1) / mid


def run_backtest(
    book: BookArrays,
    decision_idx: np.ndarray,
    predictions: np.ndarray,
    *,
    config: BacktestConfig | None = None,
    tick_fn: TickFn = krw_tick_size,
) -> BacktestResult:
    """Replay ``book`` with a prediction at each decision snapshot ``decision_idx`` (sorted row indices).

    Rule (the product's, ``autotrade.rule.decide``): buy ``order_krw`` when prediction > threshold + cost
    and the position limit allows it; sell the whole position when prediction < -(threshold + cost), or, with
    ``horizon_s``, once that long has passed since the buy that opened it and the prediction no longer
    exceeds threshold + cost (``mlmodel.rule.exit_reason``). An order arrives ``latency_ms`` after the
    decision and is filled against the book in force then (the last snapshot with ts <= arrival); while one
    is in flight and for ``cooldown_ms`` after its fill no new order is sent. Signals are vectorised; only
    the (few) snapshots that signal, or may exit a held lot, enter the Python loop: a day of 5 Hz snapshots
    replays in well under a second.
    """
    cfg = config or BacktestConfig()
    idx = np.asarray(decision_idx, dtype=np.int64)
    pred = np.asarray(predictions, dtype=np.float64)
    if idx.shape != pred.shape:
        raise ValueError("decision_idx and predictions must have the same length")
    if idx.size and (np.any(np.diff(idx) < 0) or idx[0] < 0 or idx[-1] >= len(book)):
        raise ValueError("decision_idx must be sorted row indices into the book")
    ts = book.ts
    a1, b1 = book.ask_px[:, 0], book.bid_px[:, 0]
    max_pos = cfg.order_krw if cfg.max_position_krw is None else cfg.max_position_krw
    cost = decision_costs(book, idx, cfg) if idx.size else np.zeros(0)
    edge = cfg.threshold + cost
    with np.errstate(invalid="ignore"):
        buy_sig = np.isfinite(pred) & np.isfinite(edge) & (pred > edge)
        sell_sig = np.isfinite(pred) & np.isfinite(edge) & (pred < -edge)
    finite = np.isfinite(pred) & np.isfinite(edge)
    cand = np.nonzero(buy_sig | sell_sig)[0]
    dec_ts = ts[idx]
    horizon_ms = None if cfg.horizon_s is None or cfg.horizon_s <= 0 else int(round(cfg.horizon_s * 1000))
    # Decisions where a lot held past the horizon would be sold: every one that is not a buy signal.
    exit_ok = np.nonzero(finite & ~buy_sig)[0] if horizon_ms is not None else np.zeros(0, np.int64)
    exit_ok_ts = dec_ts[exit_ok]
    opened_ts: int | None = None  # decision time of the buy that opened the held lot
    arrival_idx_all = np.searchsorted(ts, dec_ts + cfg.latency_ms, side="right") - 1

    cash, pos, basis = float(cfg.initial_cash), 0.0, 0.0
    next_free = -(2**62)
    fills: list[Fill] = []
    rejections: list[Rejection] = []
    events: list[tuple[int, float, float]] = []  # (book row, cash delta, position delta)
    trip_cash, trips = 0.0, []
    traded = 0.0
    fee_rate, dec = cfg.fee_rate, cfg.volume_decimals
    cand_ts = dec_ts[cand]
    n_cand = int(cand.shape[0])
    p = 0
    after = -1  # the last decision looked at: the horizon exit is searched after it
    while True:
        k_sig = int(cand[p]) if p < n_cand else None
        k_exit = None
        if opened_ts is not None and horizon_ms is not None and basis > 0:
            q = int(np.searchsorted(exit_ok_ts, opened_ts + horizon_ms, side="left"))
            q = max(q, int(np.searchsorted(exit_ok, after, side="right")))
            k_exit = int(exit_ok[q]) if q < exit_ok.size else None
        if k_sig is None and k_exit is None:
            break
        if k_exit is None or (k_sig is not None and k_sig <= k_exit):
            k = k_sig
            p += 1
        else:
            k = k_exit
        assert k is not None
        after = k
        t = int(dec_ts[k])
        if t < next_free:  # busy (order in flight or cooling down): jump to the first decision after it
            p = max(p, int(np.searchsorted(cand_ts, next_free, side="left")))
            after = max(after, int(np.searchsorted(dec_ts, next_free, side="left")) - 1)
            continue
        j = int(arrival_idx_all[k])
        arrival = t + cfg.latency_ms
        held_s = (t - opened_ts) / 1000.0 if opened_ts is not None and basis > 0 else None
        why = exit_reason(
            predicted_return=float(pred[k]), edge=float(edge[k]), held_s=held_s, horizon_s=cfg.horizon_s
        )
        if buy_sig[k] and why is None:
            # A position worth less than the minimum order total is dust: it cannot be sold and does not
            # count as a held lot.
            holding = pos * float(b1[idx[k]]) >= cfg.min_total_krw
            if cfg.max_position_krw is None and holding:
                continue  # one lot held: nothing to send, not an exchange rejection
            if cfg.max_position_krw is not None and basis > 0 and max_pos - basis < cfg.min_total_krw:
                continue  # at the position limit
            wanted = cfg.order_krw if cfg.max_position_krw is None else min(cfg.order_krw, max_pos - basis)
            budget = min(wanted, cash / (1.0 + fee_rate))
            if budget < cfg.min_total_krw:
                reason = "under_min_total" if wanted < cfg.min_total_krw else "insufficient_funds"
                rejections.append(Rejection(t, "buy", reason))
                next_free = t + cfg.cooldown_ms
                continue
            cap = None
            if cfg.limit_ticks is not None:
                ref = float(a1[idx[k]])
                tick = float(tick_fn(np.array([ref]))[0])
                cap = round_to_tick(ref + cfg.limit_ticks * tick, tick, up=True)
            vol, funds, used = walk_buy(book.ask_px[j], book.ask_sz[j], budget, decimals=dec, cap=cap)
            if vol <= 0:
                rejections.append(Rejection(t, "buy", "no_liquidity"))
                next_free = arrival + cfg.cooldown_ms
                continue
            fee = funds * fee_rate
            cash -= funds + fee
            if basis <= 0:
                opened_ts = t
            pos = round(pos + vol, dec)
            basis += funds + fee
            trip_cash -= funds + fee
            traded += funds
            events.append((j, -(funds + fee), vol))
            fills.append(
                Fill(
                    t,
                    arrival,
                    "buy",
                    vol,
                    funds / vol,
                    funds,
                    fee,
                    float(pred[k]),
                    float(cost[k]),
                    "signal",
                    used,
                )
            )
            next_free = arrival + cfg.cooldown_ms
        elif why is not None and pos > 0:
            volume = _floor_dec(pos, dec)
            ref_bid = float(b1[j])
            if not math.isfinite(ref_bid) or volume * ref_bid < cfg.min_total_krw:
                if basis > 0:  # an open lot that fell under the minimum: the exchange would refuse it
                    rejections.append(Rejection(t, "sell", "under_min_total"))
                    next_free = t + cfg.cooldown_ms
                continue  # (leftover dust of a closed trip: nothing to do)
            floor = None
            if cfg.limit_ticks is not None:
                ref = float(b1[idx[k]])
                tick = float(tick_fn(np.array([ref]))[0])
                floor = round_to_tick(ref - cfg.limit_ticks * tick, tick, up=False)
            vol, funds, used = walk_sell(book.bid_px[j], book.bid_sz[j], volume, decimals=dec, floor=floor)
            if vol <= 0:
                rejections.append(Rejection(t, "sell", "no_liquidity"))
                next_free = arrival + cfg.cooldown_ms
                continue
            fee = funds * fee_rate
            cash += funds - fee
            sold_frac = vol / pos
            pos = round(pos - vol, dec)
            basis *= 1.0 - sold_frac
            trip_cash += funds - fee
            traded += funds
            events.append((j, funds - fee, -vol))
            fills.append(
                Fill(
                    t,
                    arrival,
                    "sell",
                    vol,
                    funds / vol,
                    funds,
                    fee,
                    float(pred[k]),
                    float(cost[k]),
                    "horizon" if why == HORIZON_EXIT else "signal",
                    used,
                )
            )
            if pos <= 10.0**-dec or pos * ref_bid < cfg.min_total_krw:  # flat, or only dust left
                pos = max(pos, 0.0)
                basis = 0.0
                opened_ts = None
                trips.append(trip_cash)
                trip_cash = 0.0
            next_free = arrival + cfg.cooldown_ms

    start = int(idx[0]) if idx.size else 0
    last = len(book) - 1
    if cfg.close_at_end and pos > 0 and len(book):
        bid_last = float(b1[last])
        volume = _floor_dec(pos, dec)
        if math.isfinite(bid_last) and volume * bid_last >= cfg.min_total_krw:
            vol, funds, used = walk_sell(book.bid_px[last], book.bid_sz[last], volume, decimals=dec)
            if vol > 0:
                fee = funds * fee_rate
                cash += funds - fee
                pos = round(pos - vol, dec)
                trip_cash += funds - fee
                traded += funds
                events.append((last, funds - fee, -vol))
                end = int(ts[last])
                fills.append(
                    Fill(end, end, "sell", vol, funds / vol, funds, fee, math.nan, math.nan, "end", used)
                )
        if basis > 0:  # the open trip ends here; anything left unsold counts at the last bid
            trips.append(trip_cash + pos * (bid_last if math.isfinite(bid_last) else 0.0))

    # Equity curve, vectorised: cash and position are step functions changing at the fill rows.
    n_rows = max(len(book) - start, 0)
    d_cash = np.zeros(n_rows + 1)
    d_pos = np.zeros(n_rows + 1)
    for j, dc, dp in events:
        r = max(j - start, 0)
        d_cash[r] += dc
        d_pos[r] += dp
    cash_curve = cfg.initial_cash + np.cumsum(d_cash[:n_rows])
    pos_curve = np.cumsum(d_pos[:n_rows])
    pos_curve[np.abs(pos_curve) < 10.0**-dec] = 0.0
    mark = np.where(b1[start:] > 0, b1[start:], np.nan)
    bad = ~np.isfinite(mark)
    if bad.any():  # carry the last known bid over one-sided snapshots
        good_idx = np.where(~bad, np.arange(n_rows), 0)
        np.maximum.accumulate(good_idx, out=good_idx)
        mark = mark[good_idx]
    equity = cash_curve + np.where(pos_curve != 0, pos_curve * np.nan_to_num(mark), 0.0)
    eq_ts = ts[start:]
    held = pos_curve * np.nan_to_num(mark) >= cfg.min_total_krw  # a real lot, not dust
    span = int(eq_ts[-1] - eq_ts[0]) if n_rows > 1 else 0
    in_pos = float(np.sum(np.diff(eq_ts)[held[:-1]]) / span) if span > 0 else 0.0
    metrics = _metrics(
        cfg,
        equity,
        eq_ts,
        fills,
        rejections,
        trips,
        traded,
        book,
        idx,
        max_pos,
        final_cash=cash,
        final_pos=pos,
    )
    metrics["time_in_position"] = in_pos
    return BacktestResult(fills=fills, rejections=rejections, equity_ts=eq_ts, equity=equity, metrics=metrics)


def buy_and_hold(book: BookArrays, start_idx: int, *, config: BacktestConfig) -> dict[str, float]:
    """Buy the same capital the strategy may risk at the first decision (after latency), sell at the end."""
    if len(book) == 0:
        return {"pnl": 0.0, "return": 0.0}
    capital = min(
        config.order_krw if config.max_position_krw is None else config.max_position_krw,
        config.initial_cash / (1 + config.fee_rate),
    )
    j = int(np.searchsorted(book.ts, book.ts[start_idx] + config.latency_ms, side="right") - 1)
    vol, funds, _ = walk_buy(book.ask_px[j], book.ask_sz[j], capital, decimals=config.volume_decimals)
    if vol <= 0 or funds < config.min_total_krw:
        return {"pnl": 0.0, "return": 0.0}
    last = len(book) - 1
    svol, sfunds, _ = walk_sell(book.bid_px[last], book.bid_sz[last], vol, decimals=config.volume_decimals)
    unsold = vol - svol
    pnl = sfunds * (1 - config.fee_rate) - funds * (1 + config.fee_rate)
    pnl += unsold * float(np.nan_to_num(book.bid_px[last, 0]))  # marked, should the book be too thin
    return {"pnl": float(pnl), "return": float(pnl / config.initial_cash)}


def _metrics(
    cfg: BacktestConfig,
    equity: np.ndarray,
    eq_ts: np.ndarray,
    fills: list[Fill],
    rejections: list[Rejection],
    trips: list[float],
    traded: float,
    book: BookArrays,
    idx: np.ndarray,
    max_pos: float,
    *,
    final_cash: float,
    final_pos: float,
) -> dict[str, float]:
    final = float(equity[-1]) if equity.size else cfg.initial_cash
    pnl = final - cfg.initial_cash
    sharpe = 0.0
    if equity.size > 2:
        span_s = (eq_ts[-1] - eq_ts[0]) / 1000.0
        bar = cfg.sharpe_bar_s
        if span_s >= 3 * bar:
            edges = np.arange(eq_ts[0], eq_ts[-1] + 1, int(bar * 1000))
            at = np.searchsorted(eq_ts, edges, side="right") - 1
            rets = np.diff(equity[at]) / equity[at][:-1]
            sd = float(np.std(rets))
            if sd > 0:
                sharpe = float(np.mean(rets) / sd * math.sqrt(YEAR_S / bar))
    peak = np.maximum.accumulate(equity) if equity.size else np.zeros(0)
    max_dd = float(np.max((peak - equity) / peak)) if equity.size else 0.0
    wins = sum(1 for t in trips if t > 0)
    bh = buy_and_hold(book, int(idx[0]), config=cfg) if idx.size else {"pnl": 0.0, "return": 0.0}
    return {
        "net_pnl": float(pnl),
        "return": float(pnl / cfg.initial_cash),
        "return_on_capital_at_risk": float(pnl / max_pos) if max_pos > 0 else 0.0,
        "sharpe": sharpe,
        "max_drawdown": max_dd,
        "n_fills": float(len(fills)),
        "n_buys": float(sum(1 for f in fills if f.side == "buy")),
        "n_round_trips": float(len(trips)),
        "hit_rate": float(wins / len(trips)) if trips else 0.0,
        "turnover": float(traded / cfg.initial_cash),
        "fees": float(sum(f.fee for f in fills)),
        "n_rejections": float(len(rejections)),
        "time_in_position": 0.0,  # set by the caller from the position curve
        "final_cash": float(final_cash),
        "final_position": float(final_pos),
        "buy_hold_pnl": bh["pnl"],
        "buy_hold_return": bh["return"],
        "n_decisions": float(idx.size),
    }
