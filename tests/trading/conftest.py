"""Trading fixtures: the Upbit simulator on a free port driven by a scripted market (known books and trades),
users in paper and live mode, an API client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from market.livebook import livebook_clear
from market.upbit_sim.server import SimConfig, SimulatorThread
from market.upbit_sim.source import BookSnapshot, MarketUpdate, TradeTick
from tests.accounts.factories import ExchangeCredentialFactory, UserFactory, upbit_key

MARKETS = ["KRW-BTC", "KRW-ETH"]
# A known book: asks ascend, bids descend (prices on the KRW-BTC tick of 1,000).
BTC_ASKS = [(100_000_000.0, 0.001), (100_001_000.0, 0.002), (100_002_000.0, 0.01)]
BTC_BIDS = [(99_999_000.0, 0.001), (99_998_000.0, 0.002), (99_997_000.0, 0.01)]
ETH_ASKS = [(5_000_000.0, 0.1), (5_001_000.0, 0.2)]
ETH_BIDS = [(4_999_000.0, 0.1), (4_998_000.0, 0.2)]


class ScriptedSource:
    """A market source whose books and trades the test sets; nothing moves unless the test says so."""

    def __init__(self, markets: list[str], start_ms: int) -> None:
        self.markets = list(markets)
        self._start = start_ms
        self._lock = threading.Lock()
        self.books: dict[str, BookSnapshot] = {}
        self._pending: dict[str, MarketUpdate] = {}
        self._sid = 0

    def start_ms(self) -> int:
        return self._start

    def set_book(
        self, market: str, asks: list[tuple[float, float]], bids: list[tuple[float, float]], ts: int
    ) -> None:
        with self._lock:
            book = BookSnapshot(ts=ts, asks=list(asks), bids=list(bids))
            self.books[market] = book
            self._pending.setdefault(market, MarketUpdate()).books.append(book)

    def trade(self, market: str, price: float, volume: float, ask_bid: str, ts: int) -> None:
        with self._lock:
            self._sid += 1
            self._pending.setdefault(market, MarketUpdate()).trades.append(
                TradeTick(
                    ts=ts, price=price, volume=volume, ask_bid=ask_bid, sequential_id=ts * 1000 + self._sid
                )
            )

    def advance(self, until_ms: int) -> dict[str, MarketUpdate]:
        with self._lock:
            out, self._pending = self._pending, {}
            return out

    def consume(self, market: str, book_side: str, price: float, volume: float) -> None:
        with self._lock:
            book = self.books.get(market)
            if book is None:
                return
            levels = book.asks if book_side == "ask" else book.bids
            updated = [(p, max(0.0, s - volume) if p == price else s) for p, s in levels]
            updated = [(p, s) for p, s in updated if s > 1e-12]
            asks, bids = (updated, book.bids) if book_side == "ask" else (book.asks, updated)
            self.books[market] = BookSnapshot(ts=book.ts, asks=asks, bids=bids)


class Sim:
    """The running simulator plus helpers to script its market."""

    def __init__(self, thread: SimulatorThread, source: ScriptedSource) -> None:
        self.thread = thread
        self.source = source

    @property
    def rest_url(self) -> str:
        return self.thread.rest_url

    def now(self) -> int:
        return int(self.thread.call(lambda s: s.now_ms()))

    def flush(self) -> None:
        """Process what the script queued, on the simulator's loop, before returning."""
        self.thread.call(lambda s: s.step(s.now_ms()))

    def set_book(self, market: str, asks: list[tuple[float, float]], bids: list[tuple[float, float]]) -> None:
        self.source.set_book(market, asks, bids, self.now())
        self.flush()

    def trade(self, market: str, price: float, volume: float, ask_bid: str) -> None:
        self.source.trade(market, price, volume, ask_bid, self.now())
        self.flush()

    def account(self, *, krw: Any = 0, assets: dict[str, Any] | None = None) -> dict[str, str]:
        return self.thread.create_account(
            krw=str(krw), assets=assets or {}, access_key=upbit_key(), secret_key=upbit_key()
        )

    def orders_of(self, account_id: str) -> list[Any]:
        def read(s: Any) -> list[Any]:
            acct = s.engine._account(account_id)
            return [s.engine.orders[u] if hasattr(s.engine, "orders") else u for u in acct.order_uuids]

        return self.thread.call(read)

    def order_count(self, account_id: str) -> int:
        return int(self.thread.call(lambda s: len(s.engine._account(account_id).order_uuids)))

    def total_orders(self) -> int:
        def read(s: Any) -> int:
            accounts = getattr(s.engine, "accounts", {})
            return sum(len(a.order_uuids) for a in accounts.values())

        return int(self.thread.call(read))


@pytest.fixture
def sim(settings: Any) -> Iterator[Sim]:
    import time

    source = ScriptedSource(MARKETS, int(time.time() * 1000))
    config = SimConfig(markets=MARKETS, source_obj=source, rate_limits={}, backfill=False, tick_ms=20)
    thread = SimulatorThread(config).start()
    simulator = Sim(thread, source)
    simulator.set_book("KRW-BTC", BTC_ASKS, BTC_BIDS)
    simulator.set_book("KRW-ETH", ETH_ASKS, ETH_BIDS)
    settings.UPBIT_REST_URL = thread.rest_url
    settings.TRADING_PRECISE_SCHEDULE = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cache.clear()
    livebook_clear()  # books other tests' streams left in this process are not this market's
    try:
        yield simulator
    finally:
        thread.stop()
        cache.clear()


@pytest.fixture
def user(db: Any) -> Any:
    return UserFactory()


@pytest.fixture
def other_user(db: Any) -> Any:
    return UserFactory()


@pytest.fixture
def live_user(db: Any, sim: Sim) -> Any:
    """A user whose stored keys are those of a simulator account holding 10,000,000 KRW and 1 BTC."""
    from trading.models import TradingMode, TradingProfile

    acct = sim.account(krw=10_000_000, assets={"BTC": "1"})
    u = UserFactory()
    ExchangeCredentialFactory(user=u, access_key=acct["access_key"], secret_key=acct["secret_key"])
    TradingProfile.objects.update_or_create(user=u, defaults={"mode": TradingMode.LIVE})
    u.sim_account_id = acct["account_id"]
    return u


@pytest.fixture
def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def d(value: Any) -> Decimal:
    return Decimal(str(value))
