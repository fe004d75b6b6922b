"""Upbit's wire shapes built from simulator state: order-book messages (REST and WebSocket), the private
``myOrder``/``myAsset`` events, and the DEFAULT/SIMPLE/*_LIST encodings. Pure (no I/O)."""

from __future__ import annotations

from typing import Any

import orjson

from market.upbit.protocol import to_simple

from .engine import Account, AssetEvent, Order, OrderEvent
from .source import BookSnapshot


def orderbook_msg(m: str, book: BookSnapshot, depth: int, stream_type: str | None) -> dict[str, Any]:
    """An order-book message of ``depth`` levels; ``stream_type`` None = the REST shape."""
    units = []
    tas = tbs = 0.0
    asks, bids = book.asks, book.bids
    for i in range(depth):
        ap, asz = asks[i] if i < len(asks) else (0.0, 0.0)
        bp, bsz = bids[i] if i < len(bids) else (0.0, 0.0)
        tas += asz
        tbs += bsz
        units.append({"ask_price": ap, "bid_price": bp, "ask_size": asz, "bid_size": bsz})
    msg: dict[str, Any] = {
        "type": "orderbook",
        "code": m,
        "timestamp": book.ts,
        "total_ask_size": round(tas, 8),
        "total_bid_size": round(tbs, 8),
        "orderbook_units": units,
        "level": 0,
    }
    if stream_type is None:  # REST shape
        msg.pop("type")
        msg["market"] = msg.pop("code")
        return {"market": m, **{k: v for k, v in msg.items() if k != "market"}}
    msg["stream_type"] = stream_type
    return msg


def encode(msg: dict[str, Any], fmt: str) -> bytes:
    """A WebSocket payload in the subscriber's format (DEFAULT, SIMPLE, JSON_LIST, SIMPLE_LIST)."""
    if fmt in ("SIMPLE", "SIMPLE_LIST"):
        msg = to_simple(msg)
    if fmt.endswith("_LIST"):
        return orjson.dumps([msg])
    return orjson.dumps(msg)


def my_order_msg(ev: OrderEvent) -> dict[str, Any]:
    o: Order = ev.order
    f = ev.fill
    price = f.price if f else o.price
    volume = f.volume if f else o.volume
    return {
        "type": "myOrder",
        "code": o.market,
        "uuid": o.uuid,
        "ask_bid": o.side.upper(),
        "order_type": o.ord_type,
        "state": ev.state,
        "trade_uuid": f.uuid if f else None,
        "price": float(price) if price is not None else None,
        "avg_price": float(o.avg_price),
        "volume": float(volume) if volume is not None else None,
        "remaining_volume": float(o.remaining_volume) if o.remaining_volume is not None else None,
        "executed_volume": float(o.executed_volume),
        "trades_count": len(o.trades),
        "reserved_fee": float(o.reserved_fee),
        "remaining_fee": float(o.remaining_fee),
        "paid_fee": float(o.paid_fee),
        "locked": float(o.locked),
        "executed_funds": float(o.executed_funds),
        "time_in_force": o.time_in_force,
        "trade_fee": float(f.fee) if f else None,
        "is_maker": f.is_maker if f else None,
        "identifier": o.identifier,
        "smp_type": o.smp_type,
        "prevented_volume": float(o.prevented_volume),
        "prevented_locked": float(o.prevented_locked),
        "trade_timestamp": f.ts if f else None,
        "order_timestamp": o.created_ms,
        "timestamp": ev.ts,
        "stream_type": "REALTIME",
    }


def my_asset_msg(ev: AssetEvent, acc: Account) -> dict[str, Any]:
    assets = []
    for cur in ev.currencies:
        b = acc.balances.get(cur)
        if b is not None:
            assets.append({"currency": cur, "balance": float(b.balance), "locked": float(b.locked)})
    return {
        "type": "myAsset",
        "asset_uuid": ev.account_id,
        "assets": assets,
        "asset_timestamp": ev.ts,
        "timestamp": ev.ts,
        "stream_type": "REALTIME",
    }
