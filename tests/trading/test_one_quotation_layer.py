"""One quotation layer: the dashboard (market.selectors) and trading (trading.marketdata) share the market
list's cache and the per-thread quotation clients, so trading makes no market-list request of its own."""

from __future__ import annotations

from typing import Any

import pytest

from market import selectors
from trading import marketdata

pytestmark = pytest.mark.django_db


def _market_requests(sim: Any) -> int:
    return int(sim.thread.call(lambda s: s.limiter.requests["market"]))


def test_trading_reads_the_market_list_the_dashboard_cached(sim: Any) -> None:
    before = _market_requests(sim)
    listed = {m["market"] for m in selectors.market_list()}
    assert _market_requests(sim) == before + 1
    assert marketdata.market_codes() == listed and "KRW-BTC" in listed
    marketdata.market_codes()
    assert _market_requests(sim) == before + 1  # one request served both layers


def test_each_thread_reuses_its_quotation_client(sim: Any, settings: Any) -> None:
    client = selectors.quotation_client()
    assert selectors.quotation_client() is client
    assert selectors.quotation_client(max_retries=1) is not client  # the dashboard's fail-fast budget
    settings.UPBIT_REST_URL = "http://127.0.0.1:9"  # another address (nothing is sent): a new client
    assert selectors.quotation_client() is not client
