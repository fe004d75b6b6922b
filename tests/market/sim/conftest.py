"""Fixtures for the Upbit simulator tests (pure: no database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from market.upbit_sim.server import SimConfig, SimulatorThread


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    """A synthetic simulator on a free port (two markets, Upbit's REST rate limits; WebSocket connects are
    not limited to Upbit's 5/s here because the tests open many short connections)."""
    cfg = SimConfig(
        markets=["KRW-BTC", "KRW-ETH"], seed=7, tick_ms=20, rate_limits={"websocket-connect": 1000}
    )
    with SimulatorThread(cfg) as s:
        s.call(lambda x: x.step(x.now_ms()))  # a first book is there before any test asks
        yield s
