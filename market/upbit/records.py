"""Typed immutable records for Upbit WebSocket market data and a fast parser for its frames.

:func:`parse_frame` takes one frame (bytes or str) in any of Upbit's formats (DEFAULT, SIMPLE, JSON_LIST,
SIMPLE_LIST) and returns :class:`OrderbookRecord`/:class:`TradeRecord`/:class:`TickerRecord` objects. Numbers
are kept as the floats the wire carries (KRW prices are exact integers in a double; no rounding, no Decimal:
this is the data path, not the money path). Malformed frames raise :class:`MalformedFrame`; server status
frames (``{"status":"UP"}``) parse to nothing; server error frames raise :class:`ServerErrorFrame`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson

__all__ = [
    "MalformedFrame",
    "OrderbookRecord",
    "Record",
    "ServerErrorFrame",
    "TickerRecord",
    "TradeRecord",
    "parse_frame",
    "parse_message",
]


class MalformedFrame(ValueError):
    """The frame is not a well-formed Upbit market-data message. The message never includes the payload."""


class ServerErrorFrame(Exception):
    """Upbit answered the subscription with ``{"error": {"name": ..., "message": ...}}`` (§4.3)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True, slots=True)
class OrderbookRecord:
    """A full order book (Upbit sends the whole book every time). Level 1 = best; asks ascend, bids descend.

    ``packed`` holds the levels as native float64 bytes, four per level in the wire's unit order
    ``(ask_price, bid_price, ask_size, bid_size)``: one compact immutable object instead of 120 Python floats,
    which the day-file writer appends to its column buffer with a memory copy. ``rows``/``ask_price``/... give
    the familiar views. Sides shorter than the window are zero-padded on the wire (price 0, size 0) and kept.
    """

    code: str
    ts: int  # exchange timestamp, epoch ms
    recv_ts: int  # local receive time, epoch ms
    total_ask_size: float
    total_bid_size: float
    packed: bytes
    level: float = 0.0
    snapshot: bool = False

    @classmethod
    def from_sides(
        cls,
        code: str,
        ts: int,
        recv_ts: int,
        ask_price: Sequence[float],
        ask_size: Sequence[float],
        bid_price: Sequence[float],
        bid_size: Sequence[float],
        *,
        total_ask_size: float | None = None,
        total_bid_size: float | None = None,
        snapshot: bool = False,
    ) -> OrderbookRecord:
        rows = list(zip(ask_price, bid_price, ask_size, bid_size, strict=True))
        packed = (_PACKERS.get(len(rows)) or _packer(len(rows))).pack(*chain.from_iterable(rows))
        tas = float(sum(ask_size)) if total_ask_size is None else total_ask_size
        tbs = float(sum(bid_size)) if total_bid_size is None else total_bid_size
        return cls(code, ts, recv_ts, tas, tbs, packed, 0.0, snapshot)

    def _values(self) -> tuple[float, ...]:
        return struct.unpack(f"<{len(self.packed) // 8}d", self.packed)

    @property
    def levels(self) -> int:
        return len(self.packed) // 32

    @property
    def rows(self) -> tuple[tuple[float, float, float, float], ...]:
        it = iter(self._values())
        return tuple(zip(it, it, it, it, strict=False))

    @property
    def ask_price(self) -> tuple[float, ...]:
        return tuple(self._values()[0::4])

    @property
    def bid_price(self) -> tuple[float, ...]:
        return tuple(self._values()[1::4])

    @property
    def ask_size(self) -> tuple[float, ...]:
        return tuple(self._values()[2::4])

    @property
    def bid_size(self) -> tuple[float, ...]:
        return tuple(self._values()[3::4])

    def to_event(self) -> dict[str, Any]:
        """The ``market.orderbook`` fan-out payload."""
        rows = self.rows
        return {
            "code": self.code,
            "ts": self.ts,
            "total_ask_size": self.total_ask_size,
            "total_bid_size": self.total_bid_size,
            "asks": [[r[0], r[2]] for r in rows if r[0] > 0],
            "bids": [[r[1], r[3]] for r in rows if r[1] > 0],
        }


@dataclass(frozen=True, slots=True)
class TradeRecord:
    code: str
    ts: int  # trade_timestamp, epoch ms
    recv_ts: int
    price: float
    volume: float
    side: int  # +1 buyer-initiated (ask_bid == "BID"), -1 seller-initiated
    sequential_id: int
    prev_closing_price: float | None = None
    snapshot: bool = False

    def to_event(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "ts": self.ts,
            "price": self.price,
            "volume": self.volume,
            "side": "BID" if self.side > 0 else "ASK",
            "sequential_id": self.sequential_id,
        }


@dataclass(frozen=True, slots=True)
class TickerRecord:
    code: str
    ts: int
    recv_ts: int
    trade_price: float
    opening_price: float
    high_price: float
    low_price: float
    prev_closing_price: float
    change: str
    signed_change_price: float
    signed_change_rate: float
    trade_volume: float
    acc_trade_volume: float
    acc_trade_price: float
    acc_trade_volume_24h: float
    acc_trade_price_24h: float
    trade_timestamp: int
    snapshot: bool = False

    def to_event(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "ts": self.ts,
            "trade_price": self.trade_price,
            "opening_price": self.opening_price,
            "high_price": self.high_price,
            "low_price": self.low_price,
            "prev_closing_price": self.prev_closing_price,
            "change": self.change,
            "signed_change_price": self.signed_change_price,
            "signed_change_rate": self.signed_change_rate,
            "trade_volume": self.trade_volume,
            "acc_trade_volume_24h": self.acc_trade_volume_24h,
            "acc_trade_price_24h": self.acc_trade_price_24h,
            "acc_trade_volume": self.acc_trade_volume,
            "acc_trade_price": self.acc_trade_price,
        }


Record = OrderbookRecord | TradeRecord | TickerRecord

_UNIT_KEYS = ("ask_price", "bid_price", "ask_size", "bid_size")
_SIMPLE_UNIT_KEYS = ("ap", "bp", "as", "bs")
_UNIT = itemgetter(*_UNIT_KEYS)
_SIMPLE_UNIT = itemgetter(*_SIMPLE_UNIT_KEYS)


def _number(value: Any) -> float:
    # bool is an int subclass but never a price.
    if type(value) is float or (type(value) is int):
        return float(value)
    raise MalformedFrame("expected a number")


_PACKERS: dict[int, struct.Struct] = {}


def _packer(levels: int) -> struct.Struct:
    packer = _PACKERS[levels] = struct.Struct(f"<{4 * levels}d")
    return packer


def _orderbook(d: dict[str, Any], simple: bool, recv_ts: int) -> OrderbookRecord:
    if simple:
        units = d["obu"]
        getter = _SIMPLE_UNIT
        code, ts, tas, tbs, lv, st = d["cd"], d["tms"], d["tas"], d["tbs"], d.get("lv", 0), d.get("st")
    else:
        units = d["orderbook_units"]
        getter = _UNIT
        code, ts, tas, tbs = d["code"], d["timestamp"], d["total_ask_size"], d["total_bid_size"]
        lv, st = d.get("level", 0), d.get("stream_type")
    if type(code) is not str or type(ts) is not int:
        raise MalformedFrame("orderbook without a code or an integer timestamp")
    # struct converts at C speed and rejects strings/None/nested values on the way.
    n = len(units)
    packer = _PACKERS.get(n) or _packer(n)
    # Upbit serialises every unit with the same key order; when the first unit has the expected order the
    # values are taken in order (no per-key lookups), otherwise by name.
    if n and tuple(units[0]) == (_SIMPLE_UNIT_KEYS if simple else _UNIT_KEYS):
        values = chain.from_iterable(map(dict.values, units))
    else:
        values = chain.from_iterable(map(getter, units))
    try:
        packed = packer.pack(*values)
    except (struct.error, TypeError):
        raise MalformedFrame("orderbook levels are not all four numbers") from None
    tas = tas if type(tas) is float else _number(tas)
    tbs = tbs if type(tbs) is float else _number(tbs)
    return OrderbookRecord(code, ts, recv_ts, tas, tbs, packed, float(lv or 0), st == "SNAPSHOT")


def _trade(d: dict[str, Any], simple: bool, recv_ts: int) -> TradeRecord:
    if simple:
        code, ts, price, vol, ab, sid = d["cd"], d["ttms"], d["tp"], d["tv"], d["ab"], d["sid"]
        pcp, st = d.get("pcp"), d.get("st")
    else:
        code, ts, price, vol = d["code"], d["trade_timestamp"], d["trade_price"], d["trade_volume"]
        ab, sid, pcp, st = d["ask_bid"], d["sequential_id"], d.get("prev_closing_price"), d.get("stream_type")
    if type(code) is not str or type(ts) is not int or type(sid) is not int:
        raise MalformedFrame("trade without a code, an integer timestamp or sequential_id")
    if ab == "BID":
        side = 1
    elif ab == "ASK":
        side = -1
    else:
        raise MalformedFrame("trade ask_bid is neither ASK nor BID")
    return TradeRecord(
        code, ts, recv_ts, _number(price), _number(vol), side, sid,
        None if pcp is None else _number(pcp), st == "SNAPSHOT",
    )  # fmt: skip


_TICKER_DEFAULT = (
    "code", "timestamp", "trade_price", "opening_price", "high_price", "low_price", "prev_closing_price",
    "change", "signed_change_price", "signed_change_rate", "trade_volume", "acc_trade_volume",
    "acc_trade_price", "acc_trade_volume_24h", "acc_trade_price_24h", "trade_timestamp", "stream_type",
)  # fmt: skip
_TICKER_SIMPLE = (
    "cd", "tms", "tp", "op", "hp", "lp", "pcp", "c", "scp", "scr", "tv", "atv", "atp", "atv24h", "atp24h",
    "ttms", "st",
)  # fmt: skip


def _ticker(d: dict[str, Any], simple: bool, recv_ts: int) -> TickerRecord:
    keys = _TICKER_SIMPLE if simple else _TICKER_DEFAULT
    v = [d.get(k) for k in keys]
    code, ts, change, tts, st = v[0], v[1], v[7], v[15], v[16]
    if type(code) is not str or type(ts) is not int:
        raise MalformedFrame("ticker without a code or an integer timestamp")
    nums = [_number(x) for x in (v[2], v[3], v[4], v[5], v[6])]
    rest = [0.0 if x is None else _number(x) for x in (v[8], v[9], v[10], v[11], v[12], v[13], v[14])]
    return TickerRecord(
        code, ts, recv_ts, nums[0], nums[1], nums[2], nums[3], nums[4], str(change or "EVEN"), *rest,
        int(tts) if type(tts) is int else ts, st == "SNAPSHOT",
    )  # fmt: skip


_PARSERS = {"orderbook": _orderbook, "trade": _trade, "ticker": _ticker}


# -- Fast path: typed msgspec decoding of DEFAULT-format messages (no intermediate dicts) -----------------


class _Unit(msgspec.Struct, gc=False):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


class _BookMsg(msgspec.Struct, tag_field="type", tag="orderbook", gc=False):
    code: str
    timestamp: int
    total_ask_size: float
    total_bid_size: float
    orderbook_units: list[_Unit]
    level: float | None = None
    stream_type: str | None = None


class _TradeMsg(msgspec.Struct, tag_field="type", tag="trade", gc=False):
    code: str
    trade_timestamp: int
    trade_price: float
    trade_volume: float
    ask_bid: str
    sequential_id: int
    prev_closing_price: float | None = None
    stream_type: str | None = None


class _TickerMsg(msgspec.Struct, tag_field="type", tag="ticker", gc=False):
    code: str
    timestamp: int
    trade_price: float
    opening_price: float
    high_price: float
    low_price: float
    prev_closing_price: float
    change: str | None = None
    signed_change_price: float | None = None
    signed_change_rate: float | None = None
    trade_volume: float | None = None
    acc_trade_volume: float | None = None
    acc_trade_price: float | None = None
    acc_trade_volume_24h: float | None = None
    acc_trade_price_24h: float | None = None
    trade_timestamp: int | None = None
    stream_type: str | None = None


_DEFAULT_DECODER = msgspec.json.Decoder(_BookMsg | _TradeMsg | _TickerMsg)
_UNIT_ATTRS = attrgetter(*_UNIT_KEYS)
_FAST_FAILED = (msgspec.ValidationError, msgspec.DecodeError)


def _fast(msg: _BookMsg | _TradeMsg | _TickerMsg, recv_ts: int) -> Record:
    if type(msg) is _BookMsg:
        units = msg.orderbook_units
        n = len(units)
        packer = _PACKERS.get(n) or _packer(n)
        packed = packer.pack(*chain.from_iterable(map(_UNIT_ATTRS, units)))
        return OrderbookRecord(
            msg.code, msg.timestamp, recv_ts, msg.total_ask_size, msg.total_bid_size, packed,
            msg.level or 0.0, msg.stream_type == "SNAPSHOT",
        )  # fmt: skip
    if type(msg) is _TradeMsg:
        if msg.ask_bid == "BID":
            side = 1
        elif msg.ask_bid == "ASK":
            side = -1
        else:
            raise MalformedFrame("trade ask_bid is neither ASK nor BID")
        return TradeRecord(
            msg.code, msg.trade_timestamp, recv_ts, msg.trade_price, msg.trade_volume, side,
            msg.sequential_id, msg.prev_closing_price, msg.stream_type == "SNAPSHOT",
        )  # fmt: skip
    t = msg
    zero = 0.0
    return TickerRecord(
        t.code, t.timestamp, recv_ts, t.trade_price, t.opening_price, t.high_price, t.low_price,
        t.prev_closing_price, t.change or "EVEN", t.signed_change_price or zero, t.signed_change_rate or zero,
        t.trade_volume or zero, t.acc_trade_volume or zero, t.acc_trade_price or zero,
        t.acc_trade_volume_24h or zero, t.acc_trade_price_24h or zero,
        t.timestamp if t.trade_timestamp is None else t.trade_timestamp, t.stream_type == "SNAPSHOT",
    )  # fmt: skip


def parse_message(d: Any, recv_ts: int) -> Record | None:
    """One decoded message -> a record; ``None`` for status/unknown types; raises :class:`MalformedFrame`."""
    if type(d) is not dict:
        raise MalformedFrame("message is not a JSON object")
    kind = d.get("type")
    simple = False
    if kind is None:
        kind = d.get("ty")
        simple = True
    parser = _PARSERS.get(kind)  # type: ignore[arg-type]
    if parser is None:
        if "error" in d:
            err = d["error"] if isinstance(d["error"], dict) else {}
            raise ServerErrorFrame(str(err.get("name", "UNKNOWN")), str(err.get("message", "")))
        if "status" in d or kind is not None:
            return None  # {"status":"UP"} keep-alive answers, or a type we do not collect
        raise MalformedFrame("message has no type")
    try:
        return parser(d, simple, recv_ts)
    except MalformedFrame:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedFrame(f"{kind} message is missing or has a bad field ({type(exc).__name__})") from None


def parse_frame(frame: bytes | bytearray | memoryview | str, recv_ts: int) -> list[Record]:
    """Decode one WebSocket frame (a JSON object, or a JSON array of objects in the *_LIST formats).

    DEFAULT-format market data takes a typed fast path; anything else (SIMPLE, lists, status and error
    frames, and every frame the fast path refuses) goes through the general parser, which also decides
    whether a frame is malformed."""
    try:
        return [_fast(_DEFAULT_DECODER.decode(frame), recv_ts)]
    except _FAST_FAILED:
        pass
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise MalformedFrame("frame is not valid JSON") from None
    if type(data) is dict and data.get("type") == "orderbook":  # the hot path: skip the dispatch
        try:
            return [_orderbook(data, False, recv_ts)]
        except MalformedFrame:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedFrame(f"orderbook message has a bad field ({type(exc).__name__})") from None
    if type(data) is list:
        out: list[Record] = []
        for item in data:
            rec = parse_message(item, recv_ts)
            if rec is not None:
                out.append(rec)
        return out
    rec = parse_message(data, recv_ts)
    return [] if rec is None else [rec]
