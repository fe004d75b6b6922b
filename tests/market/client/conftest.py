"""Fixtures for the Upbit client tests: a live simulator on a free port and a funded account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from market.upbit_sim.server import SimConfig, SimulatorThread


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=["KRW-BTC", "KRW-ETH"], seed=11, tick_ms=20)) as s:
        s.call(lambda x: x.step(x.now_ms()))
        yield s


@pytest.fixture
def account(sim: SimulatorThread) -> dict[str, Any]:
    return sim.create_account(krw="50000000", assets={"BTC": "1"})
