"""Per-market statistics the simulator derives from its trades: ticker fields, candles, recent trades."""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market.upbit.protocol import krw_tick_size_float

from .source import TradeTick

MINUTE = 60_000
DAY = 86_400_000
KST_OFFSET = 9 * 3_600_000
MINUTE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)


def _utc(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)


def _naive(ts: int) -> str:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%S")


def _grid(price: float, mode: str = "nearest") -> float:
    """``price`` on the KRW tick grid of its band (``nearest``, ``up`` or ``down``), as a clean float."""
    tick = krw_tick_size_float(price)
    x = price / tick
    if mode == "down":
        n = math.floor(x + 1e-9)
    elif mode == "up":
        n = math.ceil(x - 1e-9)
    else:
        n = math.floor(x + 0.5)
    return round(max(1, n) * tick, 8)


@dataclass
class Candle:
    start: int  # ms, UTC interval start
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    value: float = 0.0
    last_ts: int = 0

    def add(self, price: float, volume: float, ts: int) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += volume
        self.value += price * volume
        self.last_ts = ts

    def merge(self, other: Candle) -> None:
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.value += other.value
        self.last_ts = max(self.last_ts, other.last_ts)


def _add_trade_to(
    candles: OrderedDict[int, Candle],
    span: int,
    price: float,
    volume: float,
    ts: int,
    *,
    keep: int | None = None,
) -> int:
    """Add a trade to the ``span``-ms candle it falls in (opened at its price when new), keeping the newest
    ``keep`` candles (None: all); returns that candle's start."""
    start = ts - ts % span
    c = candles.get(start)
    if c is None:
        c = candles[start] = Candle(start, price, price, price, price)
        while keep is not None and len(candles) > keep:
            candles.popitem(last=False)
    c.add(price, volume, ts)
    return start


def _fold(into: OrderedDict[int, Candle], key: int, c: Candle) -> None:
    """Merge ``c`` into the longer candle starting at ``key`` (a copy of ``c`` there when it is the first)."""
    g = into.get(key)
    if g is None:
        into[key] = Candle(key, c.open, c.high, c.low, c.close, c.volume, c.value, c.last_ts)
    else:
        g.merge(c)


def _walk_back(
    rng: np.random.Generator,
    *,
    end_price: float,
    end_start: int,
    n: int,
    span: int,
    vol: float,
    wick_vol: float,
    volume_sigma: float,
    volume_krw: float,
    price: float,
    value_at_mid: bool,
) -> tuple[OrderedDict[int, Candle], float]:
    """``n`` seeded candles of ``span`` ms ending where ``end_start`` begins, oldest first, and the first
    one's open (``end_price`` when ``n`` is 0): a geometric random walk backwards with ``vol`` per candle
    whose last close is exactly ``end_price``, each open the previous close, wicks of ``wick_vol`` beyond
    them and lognormal volumes worth about ``volume_krw`` at ``price``; traded value at the close or at the
    wicks' midpoint. Prices are on the tick grid and low <= open/close <= high."""
    rets = rng.normal(0.0, vol, n)
    back = np.exp(-np.concatenate(([0.0], np.cumsum(rets[::-1]))))  # back[k]: k candles before the end
    path = [_grid(float(x)) for x in (end_price * back)[::-1]]  # n + 1 prices, oldest first
    path[-1] = end_price
    wicks = np.abs(rng.normal(0.0, wick_vol, (n, 2)))
    volumes = rng.lognormal(0, volume_sigma, n) * volume_krw / price
    out: OrderedDict[int, Candle] = OrderedDict()
    for i in range(n):
        start = end_start - (n - i) * span
        o, c = path[i], path[i + 1]
        hi = _grid(max(o, c) * (1 + float(wicks[i, 0])), "up")
        lo = _grid(min(o, c) * (1 - float(wicks[i, 1])), "down")
        v = float(volumes[i])
        out[start] = Candle(
            start, o, hi, lo, c, v, v * ((hi + lo) / 2 if value_at_mid else c), start + span - 1
        )
    return out, path[0]


@dataclass
class MarketStats:
    market: str
    max_minutes: int = 7 * 1440
    max_seconds: int = 6 * 3600  # /v1/candles/seconds (Upbit keeps ~3 months; a simulator run is shorter)
    max_trades: int = 50_000
    trade_price: float = 0.0
    trade_volume: float = 0.0
    trade_ts: int = 0
    ask_bid: str = "BID"
    day_start: int = -1
    opening_price: float = 0.0
    high_price: float = 0.0
    low_price: float = 0.0
    prev_closing_price: float = 0.0
    acc_trade_volume: float = 0.0
    acc_trade_price: float = 0.0
    acc_ask_volume: float = 0.0
    acc_bid_volume: float = 0.0
    minutes: OrderedDict[int, Candle] = field(default_factory=OrderedDict)
    seconds: OrderedDict[int, Candle] = field(default_factory=OrderedDict)
    days: OrderedDict[int, Candle] = field(default_factory=OrderedDict)
    trades: deque[TradeTick] = field(default_factory=deque)
    # Rolling 24 h sums from minute buckets.
    _win: deque[tuple[int, float, float]] = field(default_factory=deque)
    _w_vol: float = 0.0
    _w_val: float = 0.0
    _cur_min: int = -1
    _cur_vol: float = 0.0
    _cur_val: float = 0.0

    @property
    def started(self) -> bool:
        return self.trade_price > 0

    def seed_price(self, price: float, ts: int) -> None:
        """Initial values before any trade (from the first book)."""
        if self.started or price <= 0:
            return
        self.trade_price = price
        self.trade_ts = ts
        self._roll_day(ts)
        if not self.prev_closing_price:
            self.prev_closing_price = price
        # A backfilled day may not have reached this price: today's range always contains the last price.
        self.high_price = max(self.high_price, price)
        self.low_price = min(self.low_price, price) if self.low_price > 0 else price
        if not self.opening_price:
            self.opening_price = price

    def _roll_day(self, ts: int) -> None:
        day = ts - ts % DAY
        if day == self.day_start:
            return
        if self.day_start >= 0 or not self.prev_closing_price:
            last_day = next(reversed(self.days.values()), None) if self.days else None
            self.prev_closing_price = (last_day.close if last_day else 0.0) or self.trade_price
        self.day_start = day
        self.opening_price = self.high_price = self.low_price = self.trade_price
        self.acc_trade_volume = self.acc_trade_price = 0.0
        self.acc_ask_volume = self.acc_bid_volume = 0.0

    def add_trade(self, t: TradeTick) -> None:
        price, vol, ts = t.price, t.volume, t.ts
        self.trade_price, self.trade_volume, self.trade_ts, self.ask_bid = price, vol, ts, t.ask_bid
        prev_day = self.day_start
        self._roll_day(ts)
        if prev_day != self.day_start:
            self.opening_price = self.high_price = self.low_price = price
        self.high_price = max(self.high_price, price)
        self.low_price = min(self.low_price, price) if self.low_price > 0 else price
        self.acc_trade_volume += vol
        self.acc_trade_price += price * vol
        if t.ask_bid == "ASK":
            self.acc_ask_volume += vol
        else:
            self.acc_bid_volume += vol
        m = _add_trade_to(self.minutes, MINUTE, price, vol, ts, keep=self.max_minutes)
        _add_trade_to(self.seconds, 1000, price, vol, ts, keep=self.max_seconds)
        _add_trade_to(self.days, DAY, price, vol, ts)
        self.trades.append(t)
        if len(self.trades) > self.max_trades:
            self.trades.popleft()
        if m != self._cur_min:
            if self._cur_min >= 0:
                self._win.append((self._cur_min, self._cur_vol, self._cur_val))
                self._w_vol += self._cur_vol
                self._w_val += self._cur_val
            self._cur_min, self._cur_vol, self._cur_val = m, 0.0, 0.0
        self._cur_vol += vol
        self._cur_val += price * vol

    def _rolling(self, now: int) -> tuple[float, float]:
        while self._win and self._win[0][0] <= now - DAY:
            _, v, x = self._win.popleft()
            self._w_vol -= v
            self._w_val -= x
        return max(0.0, self._w_vol + self._cur_vol), max(0.0, self._w_val + self._cur_val)

    def _52w(self) -> tuple[float, str, float, str]:
        hi, hi_d, lo, lo_d = self.high_price, self.day_start, self.low_price, self.day_start
        cutoff = self.day_start - 364 * DAY
        for d, c in self.days.items():
            if d < cutoff:
                continue
            if c.high > hi:
                hi, hi_d = c.high, d
            if c.low < lo or lo <= 0:
                lo, lo_d = c.low, d
        return hi, _utc(max(hi_d, 0)).strftime("%Y-%m-%d"), lo, _utc(max(lo_d, 0)).strftime("%Y-%m-%d")

    # ------------------------------------------------------------------------------------------ wire

    def ticker_fields(self, now: int) -> dict[str, Any]:
        """Fields common to REST and WebSocket tickers (DEFAULT names)."""
        price, pcp = self.trade_price, self.prev_closing_price or self.trade_price
        diff = round(price - pcp, 8)  # prices are on the tick grid: no float dust in the change
        rate = diff / pcp if pcp else 0.0
        v24, p24 = self._rolling(now)
        hi, hi_d, lo, lo_d = self._52w()
        t = _utc(self.trade_ts or now)
        return {
            "trade_date": t.strftime("%Y%m%d"),
            "trade_time": t.strftime("%H%M%S"),
            "trade_timestamp": self.trade_ts or now,
            "opening_price": self.opening_price or price,
            "high_price": self.high_price or price,
            "low_price": self.low_price or price,
            "trade_price": price,
            "prev_closing_price": pcp,
            "change": "RISE" if diff > 0 else "FALL" if diff < 0 else "EVEN",
            "change_price": abs(diff),
            "change_rate": round(abs(rate), 10),
            "signed_change_price": diff,
            "signed_change_rate": round(rate, 10),
            "trade_volume": self.trade_volume,
            "acc_trade_price": self.acc_trade_price,
            "acc_trade_price_24h": p24,
            "acc_trade_volume": self.acc_trade_volume,
            "acc_trade_volume_24h": v24,
            "highest_52_week_price": hi,
            "highest_52_week_date": hi_d,
            "lowest_52_week_price": lo,
            "lowest_52_week_date": lo_d,
            "timestamp": now,
        }

    def ticker_rest(self, now: int) -> dict[str, Any]:
        f = self.ticker_fields(now)
        t = _utc(f["trade_timestamp"])
        k = t + dt.timedelta(hours=9)
        out = {"market": self.market, "trade_date": f["trade_date"], "trade_time": f["trade_time"]}
        out["trade_date_kst"] = k.strftime("%Y%m%d")
        out["trade_time_kst"] = k.strftime("%H%M%S")
        for key in (
            "trade_timestamp",
            "opening_price",
            "high_price",
            "low_price",
            "trade_price",
            "prev_closing_price",
            "change",
            "change_price",
            "change_rate",
            "signed_change_price",
            "signed_change_rate",
            "trade_volume",
            "acc_trade_price",
            "acc_trade_price_24h",
            "acc_trade_volume",
            "acc_trade_volume_24h",
            "highest_52_week_price",
            "highest_52_week_date",
            "lowest_52_week_price",
            "lowest_52_week_date",
            "timestamp",
        ):
            out[key] = f[key]
        return out

    def ticker_ws(self, now: int, stream_type: str) -> dict[str, Any]:
        f = self.ticker_fields(now)
        out: dict[str, Any] = {"type": "ticker", "code": self.market}
        out.update(f)
        out["ask_bid"] = self.ask_bid
        out["acc_ask_volume"] = self.acc_ask_volume
        out["acc_bid_volume"] = self.acc_bid_volume
        out["market_state"] = "ACTIVE"
        out["is_trading_suspended"] = False
        out["delisting_date"] = None
        out["market_warning"] = "NONE"
        out["stream_type"] = stream_type
        return out

    def trade_rest(self, t: TradeTick) -> dict[str, Any]:
        u = _utc(t.ts)
        pcp = self.prev_closing_price or t.price
        return {
            "market": self.market,
            "trade_date_utc": u.strftime("%Y-%m-%d"),
            "trade_time_utc": u.strftime("%H:%M:%S"),
            "timestamp": t.ts,
            "trade_price": t.price,
            "trade_volume": t.volume,
            "prev_closing_price": pcp,
            "change_price": round(t.price - pcp, 8),
            "ask_bid": t.ask_bid,
            "sequential_id": t.sequential_id,
        }

    def trade_ws(self, t: TradeTick, stream_type: str) -> dict[str, Any]:
        u = _utc(t.ts)
        pcp = self.prev_closing_price or t.price
        diff = round(t.price - pcp, 8)
        return {
            "type": "trade",
            "code": self.market,
            "trade_price": t.price,
            "trade_volume": t.volume,
            "ask_bid": t.ask_bid,
            "prev_closing_price": pcp,
            "change": "RISE" if diff > 0 else "FALL" if diff < 0 else "EVEN",
            "change_price": abs(diff),
            "trade_date": u.strftime("%Y-%m-%d"),
            "trade_time": u.strftime("%H:%M:%S"),
            "trade_timestamp": t.ts,
            "timestamp": t.ts,
            "sequential_id": t.sequential_id,
            "best_ask_price": t.best_ask_price,
            "best_ask_size": t.best_ask_size,
            "best_bid_price": t.best_bid_price,
            "best_bid_size": t.best_bid_size,
            "stream_type": stream_type,
        }

    def recent_trades(
        self, *, count: int, to_ms: int | None = None, cursor: int | None = None, day_start: int | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for t in reversed(self.trades):
            if day_start is not None and not (day_start <= t.ts < day_start + DAY):
                if t.ts < day_start:
                    break
                continue
            if to_ms is not None and t.ts >= to_ms:
                continue
            if cursor is not None and t.sequential_id >= cursor:
                continue
            out.append(self.trade_rest(t))
            if len(out) >= count:
                break
        return out

    # ------------------------------------------------------------------------------------------ candles

    def candles(self, unit: str, *, count: int, to_ms: int | None) -> list[dict[str, Any]]:
        """``unit``: a minute count as a string, ``seconds``, ``days``, ``weeks``, ``months`` or ``years``.
        Newest first."""
        periods = ("days", "weeks", "months", "years")
        src = self.days if unit in periods else self.seconds if unit == "seconds" else self.minutes
        groups: OrderedDict[int, Candle] = OrderedDict()
        for start, c in src.items():
            if unit in ("days", "seconds"):
                key = start
            elif unit == "weeks":
                d = _utc(start).date()
                monday = d - dt.timedelta(days=d.weekday())
                key = int(
                    dt.datetime(monday.year, monday.month, monday.day, tzinfo=dt.UTC).timestamp() * 1000
                )
            elif unit == "months":
                d = _utc(start).date()
                key = int(dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp() * 1000)
            elif unit == "years":
                d = _utc(start).date()
                key = int(dt.datetime(d.year, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
            else:
                span = int(unit) * MINUTE
                key = start - start % span
            _fold(groups, key, c)
        out: list[dict[str, Any]] = []
        keys = sorted(groups, reverse=True)
        prev_close: dict[int, float] = {}
        for i, k in enumerate(keys):
            if i + 1 < len(keys):
                prev_close[k] = groups[keys[i + 1]].close
        for k in keys:
            if to_ms is not None and k >= to_ms:
                continue
            c = groups[k]
            row: dict[str, Any] = {
                "market": self.market,
                "candle_date_time_utc": _naive(k),
                "candle_date_time_kst": _naive(k + KST_OFFSET),
                "opening_price": c.open,
                "high_price": c.high,
                "low_price": c.low,
                "trade_price": c.close,
                "timestamp": c.last_ts or k,
                "candle_acc_trade_price": c.value,
                "candle_acc_trade_volume": c.volume,
            }
            if unit == "days":
                pc = prev_close.get(k, c.open)
                row["prev_closing_price"] = pc
                row["change_price"] = round(c.close - pc, 8)
                row["change_rate"] = (c.close - pc) / pc if pc else 0.0
            elif unit in ("weeks", "months", "years"):
                row["first_day_of_period"] = _utc(k).strftime("%Y-%m-%d")
            elif unit != "seconds":
                row["unit"] = int(unit)
            out.append(row)
            if len(out) >= count:
                break
        return out

    def backfill(
        self,
        *,
        end_ms: int,
        price: float,
        seed: int,
        days: int = 200,
        minutes: int = 2 * 1440,
        minute_vol: float = 0.00045,
    ) -> None:
        """Seeded history before ``end_ms`` so charts have candles at start: ``minutes`` one-minute candles
        (a geometric random walk with ``minute_vol`` per minute whose last close is exactly ``price``) and
        ``days`` day candles (the days the minutes cover are aggregated from them; earlier days continue
        the walk backwards). Every price is on the tick grid and every candle has low <= open/close <= high;
        today's open/high/low, yesterday's close and the 24 h sums follow from these candles."""
        rng = np.random.default_rng([seed, sum(self.market.encode()), 7])
        price = _grid(price)
        day0 = end_ms - end_ms % DAY
        minute0 = end_ms - end_ms % MINUTE
        # Minute candles walking backwards from the current price; then day candles continuing the walk
        # backwards (daily vol = sqrt(1440) minute vols) from the first minute's open, so the day before the
        # minutes closes where they open.
        minutes_out, first_open = _walk_back(
            rng,
            end_price=price,
            end_start=minute0,
            n=minutes,
            span=MINUTE,
            vol=minute_vol,
            wick_vol=minute_vol / 2,
            volume_sigma=0.6,
            volume_krw=2e7,
            price=price,
            value_at_mid=False,
        )
        first_min = next(iter(minutes_out)) if minutes_out else minute0
        first_day = first_min - first_min % DAY
        day_vol = minute_vol * math.sqrt(1440)
        days_out, _ = _walk_back(
            rng,
            end_price=first_open,
            end_start=first_day,
            n=max(0, days - (day0 - first_day) // DAY - 1),
            span=DAY,
            vol=day_vol,
            wick_vol=day_vol / 3,
            volume_sigma=0.4,
            volume_krw=2e10,
            price=price,
            value_at_mid=True,
        )
        for start, c in minutes_out.items():
            self.minutes[start] = c
            if start > end_ms - DAY:  # the rolling 24 h sums start with the history's last day
                self._win.append((start, c.volume, c.value))
                self._w_vol += c.volume
                self._w_val += c.value
            _fold(days_out, start - start % DAY, c)
        while len(self.minutes) > self.max_minutes:
            self.minutes.popitem(last=False)
        self.days = OrderedDict(sorted(days_out.items()))
        today = self.days.get(day0)
        yesterday = self.days.get(day0 - DAY)
        if yesterday is not None:
            self.prev_closing_price = yesterday.close
        if today is not None:
            self.day_start = day0
            self.opening_price, self.high_price, self.low_price = today.open, today.high, today.low
            self.acc_trade_volume, self.acc_trade_price = today.volume, today.value
