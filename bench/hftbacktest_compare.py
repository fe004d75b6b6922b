"""Runs the auto-trading rule of ``mlmodel.backtest`` in hftbacktest on the same books and predictions.

hftbacktest pins numpy < 2.3, so it lives in its own virtualenv; ``bench_ml.py --hftbacktest PYTHON`` writes
the data to an .npz and calls this script with that interpreter. Standalone: numpy + hftbacktest only.

    python -m venv var/hftbt-venv && var/hftbt-venv/bin/pip install hftbacktest==2.4.4
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from hftbacktest import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    EXCH_EVENT,
    LIMIT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    BacktestAsset,
    HashMapMarketDepthBacktest,
)
from hftbacktest.binding import event_dtype
from hftbacktest.order import IOC
from numba import njit

MS = 1_000_000  # hftbacktest time unit here: nanoseconds


def to_events(ts, ask_px, ask_sz, bid_px, bid_sz, t_ts, t_px, t_vol, t_side):  # noqa: ANN001, ANN201
    """Snapshot books -> L2 events (per snapshot: clear each side up to the previous snapshot's worst level,
    then one depth event per level), merged with trades by time. Vectorised."""
    n, L = ask_px.shape
    flags = EXCH_EVENT | LOCAL_EVENT
    worst_bid = np.nanmin(bid_px, axis=1)
    worst_ask = np.nanmax(ask_px, axis=1)
    prev_wb = np.r_[worst_bid[0], worst_bid[:-1]]
    prev_wa = np.r_[worst_ask[0], worst_ask[:-1]]
    per = 2 + 2 * L
    ev = np.zeros((n, per), dtype=event_dtype)
    t = ts.astype(np.int64) * MS
    ev["exch_ts"] = t[:, None]
    ev["local_ts"] = t[:, None]
    ev["ev"][:, 0] = DEPTH_CLEAR_EVENT | BUY_EVENT | flags
    ev["px"][:, 0] = prev_wb
    ev["ev"][:, 1] = DEPTH_CLEAR_EVENT | SELL_EVENT | flags
    ev["px"][:, 1] = prev_wa
    ev["ev"][:, 2 : 2 + L] = DEPTH_EVENT | BUY_EVENT | flags
    ev["px"][:, 2 : 2 + L] = bid_px
    ev["qty"][:, 2 : 2 + L] = bid_sz
    ev["ev"][:, 2 + L :] = DEPTH_EVENT | SELL_EVENT | flags
    ev["px"][:, 2 + L :] = ask_px
    ev["qty"][:, 2 + L :] = ask_sz
    ev = ev.reshape(-1)
    ev = ev[np.isfinite(ev["px"]) & (ev["px"] > 0)]
    tr = np.zeros(len(t_ts), dtype=event_dtype)
    tr["exch_ts"] = t_ts.astype(np.int64) * MS
    tr["local_ts"] = tr["exch_ts"]
    tr["ev"] = TRADE_EVENT | flags | np.where(t_side > 0, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    tr["px"] = t_px
    tr["qty"] = t_vol
    allev = np.concatenate([tr, ev])
    order = np.argsort(allev["exch_ts"], kind="stable")  # trades first at equal times: they happened before
    return allev[order]


@njit(cache=False)
def rule(hbt, dec_ts, preds, threshold, fee, spread_factor, order_krw, latency_ns, cooldown_ns, min_total):  # noqa: ANN001, ANN201
    """mlmodel.backtest's rule: buy when flat and pred > edge, sell everything when pred < -edge."""
    hbt.wait_next_feed(False, 10**15)  # the clock starts at the first event
    oid = 0
    next_free = np.int64(-(2**62))
    n_orders = 0
    for k in range(len(dec_ts)):
        target = dec_ts[k]
        now = hbt.current_timestamp
        if target > now and hbt.elapse(target - now) != 0:
            break  # end of data
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bb = depth.best_bid
        ba = depth.best_ask
        if not (bb > 0 and ba > bb):
            continue
        mid = (bb + ba) / 2.0
        edge = threshold + 2.0 * fee + spread_factor * (ba - bb) / mid
        p = preds[k]
        if target < next_free:
            continue
        pos = hbt.position(0)
        lot = depth.lot_size
        # hftbacktest's L2 exchange fills a taker IOC at the best level only (the rest expires), so "flat"
        # means a position below the minimum order total rather than exactly zero.
        if p > edge and pos * ba < min_total:
            qty = np.floor(order_krw / ba / lot) * lot
            oid += 1
            hbt.submit_buy_order(0, oid, ba + 1000 * depth.tick_size, qty, IOC, LIMIT, False)
            n_orders += 1
            next_free = target + latency_ns + cooldown_ns
        elif p < -edge and pos * bb >= min_total:
            oid += 1
            floor_px = max(bb - 1000 * depth.tick_size, depth.tick_size)
            hbt.submit_sell_order(0, oid, floor_px, np.floor(pos / lot) * lot, IOC, LIMIT, False)
            n_orders += 1
            next_free = target + latency_ns + cooldown_ns
    return n_orders


def run(data: dict[str, np.ndarray], cfg: dict[str, float]) -> dict[str, float]:
    t0 = time.perf_counter()
    events = to_events(
        data["ts"],
        data["ask_px"],
        data["ask_sz"],
        data["bid_px"],
        data["bid_sz"],
        data["t_ts"],
        data["t_px"],
        data["t_vol"],
        data["t_side"],
    )
    convert_s = time.perf_counter() - t0
    lat = int(cfg["latency_ms"]) * MS

    def backtest(ev: np.ndarray, dec_ts: np.ndarray, preds: np.ndarray) -> tuple[float, float, float]:
        asset = (
            BacktestAsset()
            .data(ev)
            .linear_asset(1.0)
            .constant_order_latency(lat, 0)
            .risk_adverse_queue_model()
            .partial_fill_exchange()
            .trading_value_fee_model(cfg["fee_rate"], cfg["fee_rate"])
            .tick_size(cfg["tick"])
            .lot_size(1e-8)
        )
        hbt = HashMapMarketDepthBacktest([asset])
        t1 = time.perf_counter()
        n_orders = rule(
            hbt,
            dec_ts,
            preds,
            cfg["threshold"],
            cfg["fee_rate"],
            cfg["spread_cost_factor"],
            cfg["order_krw"],
            lat,
            int(cfg["cooldown_ms"]) * MS,
            cfg["min_total_krw"],
        )
        if dec_ts[-1] > hbt.current_timestamp:
            hbt.elapse(int(dec_ts[-1] - hbt.current_timestamp) + 1)
        sv = hbt.state_values(0)
        depth = hbt.depth(0)
        pnl = sv.balance + sv.position * depth.best_bid - sv.fee
        hbt.close()
        return time.perf_counter() - t1, float(pnl), float(n_orders)

    dec_ts = data["ts"].astype(np.int64) * MS
    preds = data["pred"].astype(np.float64)
    small = events[events["exch_ts"] <= dec_ts[min(2000, len(dec_ts) - 1)]]
    t0 = time.perf_counter()
    backtest(small, dec_ts[:2000], preds[:2000])  # numba compilation, not timed below
    compile_s = time.perf_counter() - t0
    run_s, pnl, n_orders = backtest(events, dec_ts, preds)
    return {
        "convert_s": convert_s,
        "compile_s": compile_s,
        "run_s": run_s,
        "events": float(len(events)),
        "pnl_marked": pnl,
        "orders": n_orders,
    }


def main() -> None:
    path, cfg_json = sys.argv[1], sys.argv[2]
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    print(json.dumps(run(data, json.loads(cfg_json))))


if __name__ == "__main__":
    main()
