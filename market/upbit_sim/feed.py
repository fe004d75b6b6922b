"""The simulator's market feed: source time against the wall clock (speed, pause), the loop that advances
the source and publishes books and trades (paced or unpaced), and the public trades user orders make."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from market.dayfiles import BookArrays

from .engine import EngineEvent, Execution
from .source import BookSnapshot, TradeTick
from .synthetic import SyntheticSource

if TYPE_CHECKING:
    from .server import Simulator

log = logging.getLogger("market.upbit_sim")


class PacedClock:
    """Source time now: ``origin_ms`` plus wall time since start times ``speed``, frozen while paused.
    With ``speed == 0`` (unpaced) it is the time of the last event published."""

    def __init__(self, *, origin_ms: int, speed: float) -> None:
        self.origin_ms = origin_ms
        self.speed = speed
        self.wall_origin = time.time()
        self.paused_at: float | None = None
        self.pause_until: float | None = None
        self.unpaced_now = 0

    def now_ms(self) -> int:
        wall = self.paused_at if self.paused_at is not None else time.time()
        if self.speed == 0:
            return self.unpaced_now
        return self.origin_ms + int((wall - self.wall_origin) * 1000 * self.speed)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def pause(self, seconds: float | None = None) -> None:
        if self.paused_at is None:
            self.paused_at = time.time()
        self.pause_until = time.time() + seconds if seconds else None

    def resume(self) -> None:
        if self.paused_at is not None:
            self.wall_origin += time.time() - self.paused_at
            self.paused_at = None
        self.pause_until = None

    def pause_over(self) -> bool:
        """Paused for a set time that has now run out."""
        return self.pause_until is not None and time.time() >= self.pause_until


class Feed:
    """Advances the simulator's source and publishes what happened to the engine, the stats and the
    sockets."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.published_books = 0
        self._pending_trades: list[tuple[str, TradeTick]] = []

    async def run(self) -> None:
        sim, c, clock = self.sim, self.sim.config, self.sim.clock
        clock.unpaced_now = clock.origin_ms
        try:
            while True:
                if clock.paused:
                    if clock.pause_over():
                        clock.resume()
                    else:
                        await asyncio.sleep(0.02)
                        continue
                if c.speed == 0:
                    if isinstance(sim.source, SyntheticSource):
                        # Nobody subscribed: a trickle (REST still sees a moving market) instead of a core.
                        self.step_unpaced(c.unpaced_chunk if sim.hub.conns else 20)
                    else:
                        clock.unpaced_now += 1000
                        self.step(clock.unpaced_now)
                    # Unpaced = as fast as the slowest subscriber reads (back-pressure, never a drop).
                    await asyncio.sleep(0 if sim.hub.conns else 0.1)
                    while any(q.queue.qsize() > 2 * c.unpaced_chunk for q in sim.hub.conns):
                        await asyncio.sleep(0.001)
                else:
                    self.step(clock.now_ms())
                    await asyncio.sleep(c.tick_ms / 1000)
        except asyncio.CancelledError:
            raise
        except Exception:  # a feed crash must be loud, not silent
            log.exception("simulator feed crashed")
            raise

    def step(self, until_ms: int) -> None:
        """Advance the source to ``until_ms`` and publish what happened."""
        sim = self.sim
        updates = sim.source.advance(until_ms)
        for m, upd in updates.items():
            st = sim.stats[m]
            for t in upd.trades:
                sim.engine.on_trade(m, t.price, t.volume, t.ask_bid, t.ts)
                self.publish_trade(m, t)
            for book in upd.books:
                if not st.started and book.bids and book.bids[0][0] > 0:
                    st.seed_price(book.bids[0][0], book.ts)
                sim.engine.on_book(m, book.asks, book.bids, book.ts)
                self.publish_book(m, book)
        self.flush_user_trades()

    def step_unpaced(self, events: int) -> None:
        """Unpaced synthetic fast path: ``events`` model events per market, every book published, frames
        encoded from numpy arrays in one go (``frames.encode_orderbooks``)."""
        sim = self.sim
        assert isinstance(sim.source, SyntheticSource)
        for m, model in sim.source.models.items():
            books, trades = model.generate(events)
            n = len(books)
            if n == 0:
                continue
            last = n - 1

            def snap(i: int, b: BookArrays = books) -> BookSnapshot:
                return BookSnapshot(
                    int(b.ts[i]),
                    list(zip(b.ask_px[i].tolist(), b.ask_sz[i].tolist(), strict=True)),
                    list(zip(b.bid_px[i].tolist(), b.bid_sz[i].tolist(), strict=True)),
                )

            if len(trades):
                rows = np.searchsorted(books.ts, trades.ts, side="right") - 1
                for j in range(len(trades)):
                    r = max(0, int(rows[j]))
                    t = TradeTick(
                        int(trades.ts[j]), float(trades.price[j]), float(trades.volume[j]),
                        "BID" if trades.side[j] > 0 else "ASK", 0,
                        float(books.ask_px[r, 0]), float(books.ask_sz[r, 0]),
                        float(books.bid_px[r, 0]), float(books.bid_sz[r, 0]),
                    )  # fmt: skip
                    sim.engine.on_trade(m, t.price, t.volume, t.ask_bid, t.ts)
                    self.publish_trade(m, t)
            final = snap(last)
            sim.books[m] = final
            sim.engine.on_book(m, final.asks, final.bids, final.ts)
            self.published_books += n
            sim.clock.unpaced_now = max(sim.clock.unpaced_now, final.ts)
            sim.hub.publish_book_arrays(m, books)
        self.flush_user_trades()

    def publish_trade(self, m: str, t: TradeTick) -> None:
        sim = self.sim
        t = TradeTick(
            t.ts, t.price, t.volume, t.ask_bid, sim.ids.next(m, t.ts),
            t.best_ask_price, t.best_ask_size, t.best_bid_price, t.best_bid_size,
        )  # fmt: skip
        st = sim.stats[m]
        st.add_trade(t)
        sim.hub.publish_trade(m, st, t)

    def publish_book(self, m: str, book: BookSnapshot) -> None:
        self.sim.books[m] = book
        self.published_books += 1
        self.sim.hub.publish_book(m, book)

    def on_engine_event(self, ev: EngineEvent) -> None:
        """A user order's execution becomes a public trade once the engine call returns."""
        if isinstance(ev, Execution):
            self._pending_trades.append((ev.market, TradeTick(ev.ts, ev.price, ev.volume, ev.ask_bid, 0)))

    def flush_user_trades(self) -> None:
        """Public trades made by user taker orders (published after the engine call returns)."""
        pending, self._pending_trades = self._pending_trades, []
        for m, t in pending:
            book = self.sim.books.get(m)
            if book is not None and book.asks and book.bids:
                t = TradeTick(t.ts, t.price, t.volume, t.ask_bid, 0, *book.asks[0], *book.bids[0])
            self.publish_trade(m, t)
