"""The market-data collector: Upbit WebSocket -> day files + live fan-out + the ML prediction feed.

One asyncio process (``manage.py collect``) runs:

* :class:`market.upbit.ws.UpbitStreamer` for the configured markets (orderbook, trade, ticker);
* a :class:`market.dayfiles.DayFileWriter` (each market's rows appended to its hourly WAL every
  ``flush_interval`` s and fsynced, rolled into Parquet at the hour, day closed at KST midnight);
* the fan-out (:class:`market.fanout.MarketFanout`) to the ``market.<CODE>`` Channels groups;
* every ~1 s, when ``settings.MARKET_PREDICTION_FEED``, the new snapshots and trades of all markets are
  published as one :class:`market.messages.MarketBatch` to the subscribers ``settings.MESSAGE_SUBSCRIBERS``
  declares (the ML worker; market never names a higher app's task).

Sharded (``manage.py collect`` with ``REDIS_URL``): the process collects only the markets whose lease
it holds (:mod:`market.leases`); markets come and go while it runs (the streamer re-subscribes, the writer
hands their files over) and a market it takes gets a ``takeover``/``handover`` gap row for the hole.

Gaps (reconnects, trade-id anomalies) are written to the ``gap`` day files. SIGTERM/SIGINT stop it cleanly:
the streams close, buffered rows are flushed, nothing half-written is left.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from core import metrics
from core.messages import message_publish
from market import batchwire
from market.dayfiles import DEFAULT_LEVELS, DayFileWriter, last_recorded_ts
from market.leases import Acquired, LeaseManager, hole_start
from market.messages import MarketBatch
from market.upbit.records import OrderbookRecord, Record, TickerRecord, TradeRecord
from market.upbit.ws import TradeSequenceTracker, UpbitStreamer

logger = logging.getLogger(__name__)

PredictionSink = Callable[[dict[str, Any]], Awaitable[None] | None]


class PredictionBatcher:
    """Accumulates the new books/trades per market between sends; :meth:`take` packs them into one block
    (``market.batchwire``) with at most ``levels`` price levels per side."""

    def __init__(
        self, max_books_per_market: int = 600, levels: int | None = None, binary: bool = False
    ) -> None:
        self.binary = binary  # raw bytes instead of base64 text (for a sink whose serializer carries bytes)
        self.max_books = max_books_per_market
        self.levels = int(levels or settings.MARKET_PREDICTION_LEVELS)
        self._books: dict[str, list[tuple[int, Any]]] = {}
        self._trades: dict[str, list[tuple[int, float, float, Any]]] = {}

    def add_book(self, rec: OrderbookRecord) -> None:
        books = self._books.setdefault(rec.code, [])
        books.append((rec.ts, rec.packed[: self.levels * 32]))  # 4 float64 per level
        if len(books) > self.max_books:
            del books[0]

    def add_trade(self, rec: TradeRecord) -> None:
        self._trades.setdefault(rec.code, []).append((rec.ts, rec.price, rec.volume, rec.side))

    def take(self) -> dict[str, Any]:
        """The packed, JSON-safe message body (empty dict when nothing arrived since the last call)."""
        books, trades = self._books, self._trades
        self._books, self._trades = {}, {}
        if not books and not trades:
            return {}
        return batchwire.encode(batchwire.pack(books, trades), binary=self.binary)


def celery_prediction_sink() -> Callable[[dict[str, Any]], None]:
    """Publish a batch as a :class:`MarketBatch` to its settings-declared subscribers (the broker call runs
    off the event loop)."""

    def send(packed: dict[str, Any]) -> None:
        message_publish(message=MarketBatch(**packed))

    return send


class Collector:
    """Wires the streamer to the writer, the fan-out and the prediction feed. Call :meth:`run`, then
    :meth:`stop` (e.g. from a signal handler)."""

    def __init__(
        self,
        *,
        codes: Sequence[str],
        ws_url: str,
        data_dir: str | Path,
        flush_interval: float = 2.0,
        levels: int = DEFAULT_LEVELS,
        fanout: Any | None = None,
        prediction_sink: Callable[[dict[str, Any]], Any] | None = None,
        prediction_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
        streamer_options: dict[str, Any] | None = None,
        leases: LeaseManager | None = None,
    ) -> None:
        self.codes = list(dict.fromkeys(codes))
        # Sharded: the markets whose lease this process holds (none until the first tick); else all of them.
        self.leases = leases
        self.owned: set[str] = set() if leases is not None else set(self.codes)
        self.last_seen: dict[str, int] = {}  # market -> receive time of its newest record (sharded only)
        # market -> newest receive time the previous holder stored (sharded only): a snapshot trade at or
        # before it is one that holder already wrote.
        self._adopted_cut: dict[str, int] = {}
        self._holes: dict[str, tuple[int, str, str]] = {}  # market taken, first record not yet: its gap
        self._lease_deadline = float("inf")  # monotonic: the earliest local lease deadline (sharded)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.writer = DayFileWriter(
            data_dir,
            markets=self.codes if leases is None else (),
            levels=levels,
            flush_interval=flush_interval,
            clock=self.clock,
            # Sharded, other live processes may be writing the other markets here: each market is
            # recovered when its lease is taken (markets_take), never all at start.
            recover_at_start=leases is None,
        )
        self.fanout = fanout
        self.prediction_sink = prediction_sink
        self.prediction_interval = prediction_interval
        self.batcher = PredictionBatcher()
        self.sequences = TradeSequenceTracker()
        self.streamer = UpbitStreamer(
            ws_url,
            self.codes if leases is None else [],
            on_records=self.handle_records if leases is None else self.handle_owned_records,
            on_gap=self.handle_gap,
            clock=self.clock,
            **(streamer_options or {}),
        )
        self._stopping = asyncio.Event()
        self.counts = {"orderbook": 0, "trade": 0, "ticker": 0, "gap": 0, "duplicate": 0}
        self._last_book_ts: dict[str, int] = {}
        self.stats_interval = 60.0

    # -- hot path ------------------------------------------------------------------------------------
    def handle_records(self, records: list[Record]) -> None:
        metrics.collector_records(records)
        writer, fanout, batcher = self.writer, self.fanout, self.batcher
        feed = self.prediction_sink is not None
        last_book = self._last_book_ts
        for rec in records:
            if type(rec) is OrderbookRecord:
                previous = last_book.get(rec.code)
                if previous is not None and rec.ts < previous and not rec.snapshot:
                    # Books are full snapshots in time order; one from the past means the stream misbehaved.
                    self.handle_gap(rec.code, rec.ts, previous, "timestamp", "order book timestamp went back")
                else:
                    last_book[rec.code] = rec.ts
                writer.add_orderbook(rec)
                if fanout is not None:
                    fanout.orderbook(rec)
                if feed:
                    batcher.add_book(rec)
                self.counts["orderbook"] += 1
            elif type(rec) is TradeRecord:
                keep, reason, detail = self.sequences.check(rec)
                if reason is not None:
                    self.handle_gap(rec.code, rec.ts, rec.ts, reason, detail)
                if not keep:
                    self.counts["duplicate"] += 1
                    continue
                writer.add_trade(rec)
                if fanout is not None:
                    fanout.trade(rec)
                if feed:
                    batcher.add_trade(rec)
                self.counts["trade"] += 1
            elif type(rec) is TickerRecord:
                if fanout is not None:
                    fanout.ticker(rec)
                self.counts["ticker"] += 1

    def handle_gap(self, code: str, ts_start: int, ts_end: int, reason: str, detail: str) -> None:
        self.counts["gap"] += 1
        metrics.collector_gap(code, ts_start, ts_end, reason)
        self.writer.add_gap(code, ts_start, ts_end, reason, detail)

    # -- lifecycle -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()
        self.streamer.stop()

    async def run(self) -> None:
        logger.info("collector starting for %d market(s): %s", len(self.codes), ",".join(self.codes[:10]))
        if self.leases is None:
            self._record_restart_gaps()
        else:
            logger.info("collector sharded on Redis leases as %s", self.leases.me)
        if self.fanout is not None and hasattr(self.fanout, "start"):
            await self.fanout.start()
        stream = asyncio.create_task(self.streamer.run(), name="upbit-stream")
        housekeeping = asyncio.create_task(self._housekeeping(), name="collector-housekeeping")
        background = [stream, housekeeping]
        if self.leases is not None:
            background.append(asyncio.create_task(self._lease_loop(), name="collector-leases"))
        try:
            await self._stopping.wait()
        finally:
            self.streamer.stop()
            for task in background[1:]:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown()

    def _record_restart_gaps(self) -> None:
        """The time between the last stored row of today (a previous run) and now is an outage: record it."""
        now = self.clock()
        for code in self.codes:
            last = last_recorded_ts(self.writer.root, code, self.writer.day)
            if last is not None and last < now:
                self.handle_gap(code, last, now, "restart", "collector was not running")

    async def _shutdown(self) -> None:
        if self.leases is not None:
            self._close_holes()  # a market taken moments ago whose first record never came
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001
            logger.exception("collector: final flush failed")
        if self.leases is not None:
            # After the final flush: the next holder of each market starts where these files end.
            try:
                await self.leases.close(last_seen=self.last_seen)
            except Exception:  # noqa: BLE001 - Redis gone: the leases lapse within their TTL instead
                logger.warning(
                    "collector: could not release its leases; they lapse within %g s",
                    self.leases.ttl_ms / 1000,
                )
        await self._send_predictions()
        if self.fanout is not None and hasattr(self.fanout, "aclose"):
            try:
                await self.fanout.aclose()
            except Exception:  # noqa: BLE001
                logger.exception("collector: fan-out close failed")
        logger.info("collector stopped: %s", self.counts)

    async def _housekeeping(self) -> None:
        last_prediction = last_stats = time.monotonic()
        while not self._stopping.is_set():
            await asyncio.sleep(0.1)
            try:
                self.writer.tick()
            except Exception:  # noqa: BLE001 - e.g. disk full: keep streaming, retry at the next tick
                logger.exception("collector: writing day files failed")
            if self.leases is not None:
                self._expire_leases()
            metrics.collector_observe(self)  # at most once a second; also the collector's heartbeat
            now = time.monotonic()
            if now - last_prediction >= self.prediction_interval:
                last_prediction = now
                await self._send_predictions()
            if now - last_stats >= self.stats_interval:
                last_stats = now
                self.log_stats()

    # -- sharding: which markets this process collects ----------------------------------------------
    def handle_owned_records(self, records: list[Record]) -> None:
        """Sharded: keep the records of markets this process holds (a re-subscription's snapshot of a book
        already stored is a duplicate), note each market's newest receive time, close a taken market's
        hole at its first record."""
        if time.monotonic() >= self._lease_deadline:
            # The event loop was held up past a lease's local deadline (a stall longer than the renewal
            # slack): frames that waited in the socket meanwhile may already belong to the next holder.
            self._expire_leases()
        owned, seen, last_book, holes = self.owned, self.last_seen, self._last_book_ts, self._holes
        keep = []
        for rec in records:
            code = rec.code
            if code not in owned:
                continue
            if type(rec) is OrderbookRecord and rec.snapshot:
                # A re-subscription's snapshot repeats the current book: stored already by this process
                # (kept market) or, for a market just taken, by the previous holder before its last record.
                previous = max(last_book.get(code, -1), self._adopted_cut.get(code, -1))
                if rec.ts <= previous:
                    self.counts["duplicate"] += 1
                    continue
            elif type(rec) is TradeRecord and rec.snapshot and rec.ts <= self._adopted_cut.get(code, -1):
                # The re-subscription's snapshot repeats the exchange's last trade: the previous holder
                # stored it already when it traded before that holder's last stored record.
                self.counts["duplicate"] += 1
                continue
            if holes and code in holes:
                self._close_hole(code, rec.recv_ts)
            seen[code] = rec.recv_ts
            keep.append(rec)
        if keep:
            self.handle_records(keep)

    async def markets_take(self, acquired: Sequence[Acquired]) -> None:
        """Start collecting markets whose lease was just taken: their files are adopted from the previous
        holder, the hole since its last record is remembered (written as a gap at the first record)."""
        if not acquired:
            return
        codes = [a.market for a in acquired]
        root, day = self.writer.root, self.writer.day
        # Reading the newest stored rows of many markets takes a while: off the loop, which must go on
        # streaming the markets already held (and renewing their leases).
        lasts = await asyncio.to_thread(lambda: {c: last_recorded_ts(root, c, day) for c in codes})
        self.writer.markets_adopt(codes)
        now = self.clock()
        for a in acquired:
            local = lasts[a.market]
            if local is not None:
                self._adopted_cut[a.market] = local
            start = hole_start(last=a.last, local_last=local, flush_ms=self.writer.flush_interval_ms)
            if start is not None and start < now:
                owner = (a.last or {}).get("owner", "unknown")
                self._holes[a.market] = (start, a.reason, f"lease fence {a.fence}, from {owner}")
            metrics.collector_lease_taken(a.reason)
        self.owned.update(codes)
        self.streamer.set_codes(sorted(self.owned))
        logger.info(
            "collector took %d market(s) (%s); holds %d", len(codes), ",".join(codes[:10]), len(self.owned)
        )

    def markets_drop(self, codes: Sequence[str], *, why: str) -> None:
        """Stop collecting ``codes`` at once and hand their files over (flushed before anyone may take
        them: the caller releases the leases after this returns)."""
        codes = [c for c in codes if c in self.owned]
        if not codes:
            return
        self.owned.difference_update(codes)
        self.streamer.set_codes(sorted(self.owned))
        for code in codes:
            self._adopted_cut.pop(code, None)
            if code in self._holes:
                self._close_hole(code, self.clock())
        try:
            self.writer.markets_release(codes)
        except Exception:  # noqa: BLE001 - e.g. disk full: the rows stay buffered for the next flush
            logger.exception("collector: flushing released markets failed")
        metrics.collector_lease_dropped(len(codes), lost=not why.startswith("rebalance"))
        level = logging.INFO if why.startswith("rebalance") else logging.WARNING
        logger.log(level, "collector let go of %d market(s) (%s): %s", len(codes), ",".join(codes[:10]), why)

    def _expire_leases(self) -> None:
        assert self.leases is not None
        self.markets_drop(self.leases.expired(), why="its lease lapsed (no renewal got through in time)")
        self._lease_deadline = self.leases.next_expiry

    def _close_hole(self, code: str, end: int) -> None:
        start, reason, detail = self._holes.pop(code)
        if start < end:
            self.handle_gap(code, start, end, reason, detail)

    def _close_holes(self) -> None:
        now = self.clock()
        for code in list(self._holes):
            self._close_hole(code, now)

    async def _lease_loop(self) -> None:
        """Every ``renew_s``: renew, rebalance, take free markets; a Redis failure only logs (held leases
        then lapse locally, in :meth:`_housekeeping`, before anyone else may take them)."""
        assert self.leases is not None
        leases, failing = self.leases, False
        while not self._stopping.is_set():
            try:
                result = await leases.tick(last_seen=self.last_seen)
            except Exception as exc:  # noqa: BLE001
                if not failing:
                    logger.warning("collector: lease renewal failed (%s); retrying", type(exc).__name__)
                failing = True
            else:
                if failing:
                    logger.warning("collector: lease renewal works again")
                failing = False
                self.markets_drop(result.lost, why="its lease was taken (renewal refused)")
                if result.release:
                    self.markets_drop(result.release, why="rebalance: planned for another collector")
                    try:
                        await leases.release(result.release, last_seen=self.last_seen)
                    except Exception:  # noqa: BLE001 - they lapse within the TTL instead
                        logger.warning("collector: releasing leases failed; they lapse instead")
                if result.acquired:
                    await self.markets_take(result.acquired)
                self._lease_deadline = leases.next_expiry
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=leases.renew_s)
            except TimeoutError:
                pass

    def log_stats(self) -> None:
        """One line for operators: what came in, what was written, what went wrong."""
        st, w = self.streamer.stats, self.writer
        logger.info(
            "collector stats: %s; frames=%d malformed=%d reconnects=%d appends=%d rows=%d dropped=%d "
            "rolled=%d",
            self.counts, st.frames, st.malformed, st.reconnects, w.segments_written, w.rows_written,
            w.rows_dropped, w.files_rolled,
        )  # fmt: skip

    async def _send_predictions(self) -> None:
        if self.prediction_sink is None:
            return
        batch = self.batcher.take()
        if not batch:
            return
        try:
            result = await asyncio.to_thread(self.prediction_sink, batch)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # noqa: BLE001 - the prediction feed is best effort; the data is on disk anyway
            logger.exception("collector: sending the prediction batch failed")


def install_signal_handlers(collector: Collector) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, collector.stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(collector.stop))


async def collect(
    *,
    codes: Sequence[str],
    ws_url: str,
    data_dir: str | Path,
    flush_interval: float = 2.0,
    fanout: Any | None = None,
    prediction_sink: Callable[[dict[str, Any]], Any] | None = None,
    streamer_options: dict[str, Any] | None = None,
    leases: LeaseManager | None = None,
) -> Collector:
    """Run a collector until SIGTERM/SIGINT; returns it (with its counters) once it has shut down.
    With ``leases`` it collects only the markets of ``codes`` whose lease it holds (see the module doc)."""
    collector = Collector(
        codes=codes,
        ws_url=ws_url,
        data_dir=data_dir,
        flush_interval=flush_interval,
        fanout=fanout,
        prediction_sink=prediction_sink,
        streamer_options=streamer_options,
        leases=leases,
    )
    install_signal_handlers(collector)
    await collector.run()
    return collector
