"""What a market source (synthetic model or replay) hands the simulator: full books and public trades."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

Level = tuple[float, float]  # (price, size)


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    ts: int  # epoch ms
    asks: list[Level]  # best first (ascending)
    bids: list[Level]  # best first (descending)


@dataclass(frozen=True, slots=True)
class TradeTick:
    ts: int
    price: float
    volume: float
    ask_bid: str  # "BID": buyer-initiated (took asks); "ASK": seller-initiated
    sequential_id: int
    best_ask_price: float = 0.0
    best_ask_size: float = 0.0
    best_bid_price: float = 0.0
    best_bid_size: float = 0.0


@dataclass
class MarketUpdate:
    """Everything that happened in one market during one ``advance`` call.

    ``books`` holds every book in order when the source records all of them (unpaced streaming), else just
    the latest one; ``book`` is the latest.
    """

    books: list[BookSnapshot] = field(default_factory=list)
    trades: list[TradeTick] = field(default_factory=list)

    @property
    def book(self) -> BookSnapshot | None:
        return self.books[-1] if self.books else None


class MarketSource(Protocol):
    markets: list[str]

    def advance(self, until_ms: int) -> dict[str, MarketUpdate]:
        """Run the source up to source time ``until_ms``; return the markets that changed."""
        ...

    def start_ms(self) -> int:
        """Source time at which the stream begins."""
        ...

    def consume(self, market: str, book_side: str, price: float, volume: float) -> None:
        """A simulator user took ``volume`` at ``price`` from ``book_side`` (``ask``/``bid``)."""
        ...


class SequenceIds:
    """Upbit-style trade ids (``ts_ms * 1000 + n``), strictly increasing per market."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def next(self, market: str, ts: int) -> int:
        sid = max(self._last.get(market, 0) + 1, ts * 1000)
        self._last[market] = sid
        return sid
