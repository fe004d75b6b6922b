"""Replay source: recorded day files (``market.dayfiles``) or the real 2018 KRW-ADA sample CSV, at 1x or
N-times speed, looping.

Source time is rebased so the stream starts at ``start_ms`` (default: the recording's own time) and keeps
increasing across loops (each loop is shifted by the recording's duration plus one second), so clients
never see time or ``sequential_id`` go backwards.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from market.dayfiles import (
    BookArrays,
    TradeArrays,
    book_arrays,
    list_days,
    read_days,
    sample_csv_tables,
    trade_arrays,
)

from .source import BookSnapshot, MarketUpdate, SequenceIds, TradeTick

SAMPLE_MARKET = "KRW-ADA"
LOOP_GAP_MS = 1000


@dataclass
class _Cursor:
    book: BookArrays
    trades: TradeArrays
    first_ts: int
    duration: int
    bi: int = 0
    ti: int = 0
    offset: int = 0


def _levels(px: np.ndarray, sz: np.ndarray) -> list[tuple[float, float]]:
    px = np.nan_to_num(px, nan=0.0)
    sz = np.nan_to_num(sz, nan=0.0)
    return list(zip(px.tolist(), sz.tolist(), strict=True))


class ReplaySource:
    def __init__(
        self,
        data: dict[str, tuple[BookArrays, TradeArrays]],
        *,
        start_ms: int | None = None,
        loop: bool = True,
        record_all: bool = False,
    ) -> None:
        if not data:
            raise ValueError("nothing to replay")
        self.markets = list(data)
        self.loop = loop
        self.record_all = record_all
        self._ids = SequenceIds()
        self._cursors: dict[str, _Cursor] = {}
        firsts = []
        for m, (book, trades) in data.items():
            ts = [a for a in (book.ts[:1], trades.ts[:1]) if len(a)]
            te = [a for a in (book.ts[-1:], trades.ts[-1:]) if len(a)]
            if not ts:
                raise ValueError(f"no data for {m}")
            first, last = int(min(a[0] for a in ts)), int(max(a[0] for a in te))
            self._cursors[m] = _Cursor(book, trades, first, last - first + LOOP_GAP_MS)
            firsts.append(first)
        origin = min(firsts)
        self._start = origin if start_ms is None else start_ms
        for c in self._cursors.values():
            c.offset = self._start - origin

    # ------------------------------------------------------------------------------------------ loaders

    @classmethod
    def from_sample_csv(
        cls, path: str | os.PathLike[str], market: str = SAMPLE_MARKET, **kw: object
    ) -> ReplaySource:
        book, trades = sample_csv_tables(path)
        return cls({market: (book_arrays(book), trade_arrays(trades))}, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_dayfiles(
        cls,
        root: str | os.PathLike[str],
        markets: list[str] | None = None,
        days: list[dt.date] | None = None,
        **kw: object,
    ) -> ReplaySource:
        root = Path(root)
        if markets is None:
            base = root / "orderbook"
            markets = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        data = {}
        for m in markets:
            ds = days or list_days(root, "orderbook", m)
            if not ds:
                continue
            book = book_arrays(read_days(root, "orderbook", m, ds))
            trades = trade_arrays(read_days(root, "trade", m, days or list_days(root, "trade", m)))
            if len(book):
                data[m] = (book, trades)
        return cls(data, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], markets: list[str] | None = None, **kw: object
    ) -> ReplaySource:
        """A ``.csv`` file (or a folder holding one, like ``shared/data/upbit-krw-ada-2018``) is the real
        sample; anything else is a day-file root."""
        p = Path(path)
        if p.is_dir() and not (p / "orderbook").is_dir():
            csvs = sorted(p.glob("*.csv"))
            if csvs:
                p = csvs[0]
        if p.suffix == ".csv":
            market = markets[0] if markets else SAMPLE_MARKET
            return cls.from_sample_csv(p, market, **kw)
        return cls.from_dayfiles(p, markets, **kw)

    # ------------------------------------------------------------------------------------------ stream

    def start_ms(self) -> int:
        return self._start

    def consume(self, market: str, book_side: str, price: float, volume: float) -> None:
        """Recorded books cannot react: the engine's overlay covers liquidity taken until the next book."""

    def advance(self, until_ms: int) -> dict[str, MarketUpdate]:
        out: dict[str, MarketUpdate] = {}
        for m, c in self._cursors.items():
            upd = MarketUpdate()
            while True:
                nb, nt = len(c.book), len(c.trades)
                if c.bi >= nb and c.ti >= nt:
                    if not self.loop:
                        break
                    c.bi = c.ti = 0
                    c.offset += c.duration
                    continue
                tb = int(c.book.ts[c.bi]) + c.offset if c.bi < nb else None
                tt = int(c.trades.ts[c.ti]) + c.offset if c.ti < nt else None
                # Trades go before a book of the same time (the book shows their result).
                if tt is not None and (tb is None or tt <= tb):
                    if tt > until_ms:
                        break
                    self._trade(m, c, tt, upd)
                    c.ti += 1
                else:
                    assert tb is not None
                    if tb > until_ms:
                        break
                    if self.record_all or not upd.books:
                        upd.books.append(self._book(c, c.bi, tb))
                    else:
                        upd.books[-1] = self._book(c, c.bi, tb)
                    c.bi += 1
            if upd.books or upd.trades:
                out[m] = upd
        return out

    def _book(self, c: _Cursor, i: int, ts: int) -> BookSnapshot:
        b = c.book
        return BookSnapshot(ts, _levels(b.ask_px[i], b.ask_sz[i]), _levels(b.bid_px[i], b.bid_sz[i]))

    def _trade(self, m: str, c: _Cursor, ts: int, upd: MarketUpdate) -> None:
        t = c.trades
        i = c.ti
        bi = max(0, min(c.bi - 1, len(c.book) - 1))
        b = c.book
        upd.trades.append(
            TradeTick(
                ts=ts,
                price=float(t.price[i]),
                volume=float(t.volume[i]),
                ask_bid="BID" if int(t.side[i]) > 0 else "ASK",
                sequential_id=self._ids.next(m, ts),
                best_ask_price=float(np.nan_to_num(b.ask_px[bi, 0])) if b.levels else 0.0,
                best_ask_size=float(np.nan_to_num(b.ask_sz[bi, 0])) if b.levels else 0.0,
                best_bid_price=float(np.nan_to_num(b.bid_px[bi, 0])) if b.levels else 0.0,
                best_bid_size=float(np.nan_to_num(b.bid_sz[bi, 0])) if b.levels else 0.0,
            )
        )
