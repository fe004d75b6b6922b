"""The Upbit simulator's network face: an aiohttp server speaking Upbit's REST and WebSocket protocol.

Start it in a test (background thread, free port)::

    from market.upbit_sim.server import SimConfig, SimulatorThread

    with SimulatorThread(SimConfig(markets=["KRW-BTC"], seed=1)) as sim:
        acct = sim.create_account(krw="1000000")           # {"account_id", "access_key", "secret_key"}
        base = sim.rest_url                                   # "http://127.0.0.1:<port>" (then /v1/...)
        ws = sim.ws_url                                       # "ws://127.0.0.1:<port>/websocket/v1"
        ...

or from the shell: ``manage.py upbit_sim --port 8765 --source synthetic --markets KRW-BTC,KRW-ETH``.

Admin API (not part of Upbit; unauthenticated, bind the simulator to localhost):

* ``POST /_sim/accounts`` body ``{"krw": "1000000", "assets": {"BTC": "0.5"}}`` ->
  ``{"account_id", "access_key", "secret_key"}`` (201). Optional ``"access_key"``/``"secret_key"`` to
  choose them, ``"expired": true`` for an expired key.
* ``POST /_sim/accounts/{account_id}/deposit`` body ``{"currency": "KRW", "amount": "5000"}``.
* ``POST /_sim/drop_websockets`` (``?mode=abort`` default: transport closed without a close frame, like
  Upbit's idle drop; ``?mode=close``: close frame 1001) -> ``{"dropped": n}``.
* ``POST /_sim/pause`` (``{"seconds": 5}`` optional; without it until ``POST /_sim/resume``): the market
  stops (no new books/trades, source time frozen) while sockets stay open.
* ``GET /_sim/state``: markets, source time, connections, paused, the synthetic ``signal_strength``,
  ``requests`` and ``refused`` (429s) per rate-limit group since start.

Upbit protocol facts implemented (see ``shared/upbit-api.md``): quotation REST with JSON numbers and
integer error names; exchange REST with decimal strings, JWT verification in §2.4 order (HS256/HS512,
nonce replay, SHA-512 query hash of the unencoded parameters, percent-encoded variant accepted), string
error names; per-group fixed 1-second rate-limit buckets with ``Remaining-Req`` and plain-text 429
``Too many API requests.``; public WebSocket (binary frames of UTF-8 JSON, ticket/type/codes/format,
``CODE.N`` depth, SNAPSHOT then REALTIME, only-snapshot/only-realtime, DEFAULT/SIMPLE/JSON_LIST/
SIMPLE_LIST, text ``PING`` -> ``{"status":"UP"}`` every 10 s, error frame then close 1000, idle close);
private WebSocket ``myOrder``/``myAsset`` with the Bearer JWT on the upgrade.

Exchange endpoints: ``GET /v1/accounts``, ``GET /v1/orders/chance``, ``POST /v1/orders`` (limit, price,
market, best; ioc/fok/post_only; smp_type), ``POST /v1/orders/test``, ``POST /v1/orders/cancel_and_new``,
``GET /v1/order``, ``DELETE /v1/order``, ``GET /v1/orders/open|closed|uuids``, legacy ``GET /v1/orders``,
``DELETE /v1/orders/uuids``, ``DELETE /v1/orders/open``; an unknown exchange path answers 404 ``not_found``
with the ``default`` group's ``Remaining-Req``. Candles: ``seconds``, ``minutes/{1..240}``, ``days``,
``weeks``, ``months``, ``years``. ``POST /v1/orders`` is limited to 12/s (KR, §3.1). Names Upbit does
not document are marked in
``protocol.ERRORS`` (``duplicate_identifier``, ``order_not_cancelable``). Not simulated: stop (``watch``)
orders, the 418 block after repeated 429s, the ``Origin`` rate-limit group, ``level`` price grouping (a
non-zero level answers ``[]``/no data), WebSocket ``candle.*`` types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from market.upbit.protocol import DEFAULT_RATE_LIMITS, FEE_RATE, KRW_TICK_TABLE, error_body

from .auth import KeyStore
from .controls import SimControls
from .engine import MatchingEngine
from .exchange_api import ExchangeApi
from .feed import Feed, PacedClock
from .quotation_api import QuotationApi
from .ratelimit import RateGate, RateLimiter, limits_for
from .replay import ReplaySource
from .responses import is_exchange_path, json_response
from .source import BookSnapshot, MarketSource, SequenceIds
from .stats import MarketStats
from .synthetic import SyntheticSource
from .websocket import WsConn, WsHub

__all__ = ["RateLimiter", "SimConfig", "Simulator", "SimulatorThread", "run_simulator", "serve"]

log = logging.getLogger("market.upbit_sim")


@dataclass
class SimConfig:
    """Everything configurable; defaults follow Upbit (§3 rate limits, §7 rules)."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port (read it back from ``SimulatorThread.port``)
    markets: list[str] = field(default_factory=lambda: ["KRW-BTC"])
    source: str = "synthetic"  # synthetic | replay
    seed: int = 1
    speed: float = 1.0  # source seconds per wall second; 0 = unpaced (as fast as possible)
    replay_path: str | None = None
    replay_loop: bool = True
    rebase_time: bool = True  # replay: stream starts at wall-clock now
    tick_ms: int = 50  # publishing period (paced mode)
    rate_limits: dict[str, int] | None = None  # None = Upbit's; {} = no limits; partial dict overrides
    ws_idle_timeout: float = 120.0  # seconds without any client frame before the server drops the socket
    ws_status_interval: float = 10.0  # {"status":"UP"} period after a text PING
    ws_queue_max: int = 20_000  # per-connection backlog before a slow client is dropped (paced mode)
    activity: float | None = None  # synthetic event-rate scale (None: 1, or 20/len(markets) above 20)
    volatility: float | dict[str, float] | None = None  # synthetic target 1-min vol (None: 0.045 %)
    signal_strength: float = 0.0  # synthetic planted order-flow signal (0 = off, 1 = the demo's default)
    unpaced_chunk: int = 2000  # events per market per loop turn when speed == 0 (synthetic)
    backfill: bool = True  # seeded candle history before the start (synthetic)
    json_429: bool = False  # 429 body as a JSON error envelope instead of Upbit's plain text
    fee_rate: Decimal = FEE_RATE
    start_ms: int | None = None  # synthetic source time origin; None = now
    source_obj: MarketSource | None = None  # a ready source (overrides ``source``)
    # Accounts created at start: [{"krw": "1000000", "assets": {...}, "access_key": ..., "secret_key": ...}]
    initial_accounts: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------ core


class Simulator:
    """The core: state shared by the parts (source, engine, stats, books, keys, limiter) and the aiohttp
    application they are mounted on. Everything runs on one event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.limiter = RateLimiter(limits_for(DEFAULT_RATE_LIMITS, config.rate_limits))
        self.gate = RateGate(self.limiter, json_429=config.json_429)
        self.source = config.source_obj or self._make_source()
        self.markets = list(self.source.markets)
        self.clock = PacedClock(origin_ms=self.source.start_ms(), speed=config.speed)
        self.engine = MatchingEngine(
            self.markets, fee_rate=config.fee_rate, tick_table=KRW_TICK_TABLE, clock=self.now_ms
        )
        self.engine.liquidity_taken = self.source.consume
        self.stats = {m: MarketStats(m) for m in self.markets}
        self.books: dict[str, BookSnapshot] = {}
        self.ids = SequenceIds()
        self.keys = KeyStore()
        self.hub = WsHub(self)
        self.feed = Feed(self)
        self.engine.listeners.append(self.feed.on_engine_event)
        self.engine.listeners.append(self.hub.on_engine_event)
        self._tasks: list[asyncio.Task[None]] = []
        if config.backfill and config.source == "synthetic" and config.source_obj is None:
            for m in self.markets:
                model = getattr(self.source, "models", {}).get(m)
                if model is not None:
                    # History ends at the price the ticker is seeded with (the first book's best bid).
                    self.stats[m].backfill(
                        end_ms=self.clock.origin_ms,
                        price=model.book().bids[0][0],
                        seed=config.seed,
                        minute_vol=model.params.target_vol,
                    )
        self.step(self.clock.origin_ms)  # initial books/prices before the first client arrives
        for spec in config.initial_accounts:
            self.account_create(**spec)
        self.app = self._make_app()

    def _make_source(self) -> MarketSource:
        c = self.config
        record_all = c.speed == 0
        if c.source == "synthetic":
            start = c.start_ms if c.start_ms is not None else int(time.time() * 1000)
            return SyntheticSource(
                c.markets,
                seed=c.seed,
                start_ms=start,
                record_all=record_all,
                activity=c.activity,
                volatility=c.volatility,
                signal_strength=c.signal_strength,
            )
        if c.source == "replay":
            if not c.replay_path:
                raise ValueError("replay needs replay_path")
            start = int(time.time() * 1000) if c.rebase_time else None
            return ReplaySource.from_path(
                c.replay_path, c.markets or None, start_ms=start, loop=c.replay_loop, record_all=record_all
            )
        raise ValueError(f"unknown source {c.source!r}")

    # -------------------------------------------------------------------------------------------- the market

    def now_ms(self) -> int:
        """Source time now (what every timestamp on the wire uses)."""
        return self.clock.now_ms()

    def pause(self, seconds: float | None = None) -> None:
        self.clock.pause(seconds)

    def resume(self) -> None:
        self.clock.resume()

    def step(self, until_ms: int) -> None:
        """Advance the source to ``until_ms`` and publish what happened (also usable directly in tests)."""
        self.feed.step(until_ms)

    def step_unpaced(self, events: int) -> None:
        self.feed.step_unpaced(events)

    @property
    def conns(self) -> set[WsConn]:
        return self.hub.conns

    @property
    def published_books(self) -> int:
        return self.feed.published_books

    def public_book(self, m: str, book: BookSnapshot) -> BookSnapshot:
        """The source book merged with resting user orders / less liquidity users took."""
        eng = self.engine
        if not eng._resting[m]["bid"] and not eng._resting[m]["ask"] and not eng._books[m].consumed:
            return book
        asks, bids, ts = eng.book_levels(m)
        return BookSnapshot(book.ts, asks, bids)

    def account_create(
        self,
        *,
        krw: Decimal | str | int = 0,
        assets: dict[str, Any] | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        expired: bool = False,
    ) -> dict[str, str]:
        acc = self.engine.account_create(krw=Decimal(str(krw)), assets=assets)
        key = self.keys.add(
            account_id=acc.account_id, access_key=access_key, secret_key=secret_key, expired=expired
        )
        return {"account_id": acc.account_id, "access_key": key.access_key, "secret_key": key.secret_key}

    # -------------------------------------------------------------------------------------------- http app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """No request ever gets a bare 500 page: unknown paths get Upbit-style 404s, bugs a JSON 500."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and is_exchange_path(request.path):
                # The exchange API's envelope: a snake_case name, counted in the exchange ``default`` group.
                _, hdr = self.gate.limit(request, "default")
                name = "not_found" if exc.status == 404 else exc.reason.lower().replace(" ", "_")
                return json_response(error_body(name, exc.reason), exc.status, hdr)
            if exc.status >= 400 and request.path.startswith("/v1/"):
                return json_response(error_body(exc.status, exc.reason), exc.status)
            raise
        except Exception:
            log.exception("simulator request failed: %s %s", request.method, request.path)
            return json_response(error_body("server_error", "internal simulator error"), 500)

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[self._errors])
        r = app.router
        QuotationApi(self).routes(r)
        ExchangeApi(self).routes(r)
        r.add_get("/websocket/v1", self.hub.h_public)
        r.add_get("/websocket/v1/private", self.hub.h_private)
        SimControls(self).routes(r)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self.clock.wall_origin = time.time()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.feed.run()), loop.create_task(self.hub.idle_watch())]

    async def _on_shutdown(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.hub.drop_all(abort=True)


# ------------------------------------------------------------------------------------------------------ runni


async def serve(
    config: SimConfig, ready: Callable[[Simulator, int], None] | None = None, *, handle_signals: bool = False
) -> None:
    """Run until cancelled (or SIGTERM/SIGINT with ``handle_signals``)."""
    sim = Simulator(config)
    runner = web.AppRunner(sim.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    port = config.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(sim, port)
    stop = asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_simulator(config: SimConfig) -> None:
    """Blocking entry point (the management command)."""

    def ready(sim: Simulator, port: int) -> None:
        log.info("Upbit simulator on http://%s:%d (markets %s)", config.host, port, ",".join(sim.markets))
        print(
            f"Upbit simulator listening on http://{config.host}:{port}  ws://{config.host}:{port}/websocket/v1",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, ready, handle_signals=True))


class SimulatorThread:
    """The simulator on a free port in a background thread (for tests). Use as a context manager."""

    def __init__(self, config: SimConfig | None = None, **kw: Any) -> None:
        self.config = config or SimConfig(**kw)
        self.sim: Simulator | None = None
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/websocket/v1"

    @property
    def private_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/websocket/v1/private"

    def start(self, timeout: float = 20.0) -> SimulatorThread:
        def ready(sim: Simulator, port: int) -> None:
            self.sim, self.port = sim, port
            self._ready.set()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                self._task = loop.create_task(serve(self.config, ready))
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="upbit-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def call(self, fn: Callable[[Simulator], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(sim)`` on the simulator's loop (thread-safe access to engine/state)."""
        assert self.loop is not None and self.sim is not None
        sim = self.sim

        async def run() -> Any:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def create_account(
        self, *, krw: Any = 0, assets: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, str]:
        return self.call(lambda s: s.account_create(krw=krw, assets=assets, **kw))

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self._task is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
