"""Public market-data REST API against the project's Upbit simulator: markets, ticker, order book, trades,
candles for every chart range; bad input is a clear 400, an unreachable Upbit a 503, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from market.upbit_sim.server import SimConfig, SimulatorThread
from tests.live import free_port

MARKETS = ["KRW-BTC", "KRW-ETH"]


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    from market.upbit.client import UpbitClient
    from tests.live import wait_until

    with SimulatorThread(SimConfig(markets=MARKETS, seed=7, rate_limits={})) as sim:
        with UpbitClient(base_url=sim.rest_url) as client:  # a market that has traded at least once
            wait_until(lambda: all(client.trades(m, count=1) for m in MARKETS), timeout=30, message="trades")
        yield sim


@pytest.fixture
def api(simulator: SimulatorThread, settings) -> APIClient:  # noqa: ANN001
    settings.UPBIT_REST_URL = simulator.rest_url
    return APIClient()


def test_markets_lists_krw_markets(api: APIClient) -> None:
    response = api.get("/api/market/markets/")
    assert response.status_code == 200
    codes = [m["market"] for m in response.json()]
    assert codes == sorted(MARKETS)
    assert set(response.json()[0]) == {"market", "korean_name", "english_name", "warning"}


def test_ticker_orderbook_and_trades_come_in_the_live_payload_shapes(
    api: APIClient, simulator: SimulatorThread
) -> None:
    from market.upbit.client import UpbitClient

    ticker = api.get("/api/market/krw-btc/ticker/").json()
    with UpbitClient(base_url=simulator.rest_url) as client:
        raw = client.tickers(["KRW-BTC"])[0]  # what Upbit (the simulator) said, within the 1 s cache
    assert ticker["market"] == "KRW-BTC" and ticker["price"] > 0
    assert ticker["change"] in ("RISE", "EVEN", "FALL")
    assert ticker["prev_close"] == raw["prev_closing_price"]
    assert abs(ticker["ts"] - raw["timestamp"]) < 60_000
    assert ticker["change_rate"] == pytest.approx(ticker["change_price"] / ticker["prev_close"], rel=1e-6)

    book = api.get("/api/market/KRW-BTC/orderbook/?levels=5").json()
    assert len(book["asks"]) == 5 and len(book["bids"]) == 5
    assert book["asks"][0][0] > book["bids"][0][0]  # not crossed
    assert [a[0] for a in book["asks"]] == sorted(a[0] for a in book["asks"])
    cum = 0.0
    for _price, size, cumulative in book["bids"]:
        cum += size
        assert cumulative == pytest.approx(cum)

    trades = api.get("/api/market/KRW-BTC/trades/?count=20").json()["trades"]
    assert trades and [t["ts"] for t in trades] == sorted(t["ts"] for t in trades)
    assert {t["side"] for t in trades} <= {"BID", "ASK"}


@pytest.mark.parametrize("interval", ["1m", "1d", "1w", "1M", "3M"])
def test_candles_for_each_chart_range(api: APIClient, simulator: SimulatorThread, interval: str) -> None:
    response = api.get(f"/api/market/KRW-BTC/candles/?interval={interval}")
    assert response.status_code == 200, response.content
    body = response.json()
    candles = body["candles"]
    assert body["interval"] == interval and candles
    times = [c["time"] for c in candles]
    assert times == sorted(times) and len(set(times)) == len(times)
    for c in candles:
        assert c["low"] <= min(c["open"], c["close"]) and c["high"] >= max(c["open"], c["close"])
    step = {"1m": 60, "1d": 600, "1w": 3600, "1M": 86400, "3M": 86400}[interval]
    assert all(t % step == 0 for t in times)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/api/market/BTC/ticker/", "invalid_market"),
        ("/api/market/KRW-BTC;DROP/orderbook/", "invalid_market"),
        ("/api/market/KRW-NOPE/ticker/", "invalid_market"),
        ("/api/market/KRW-BTC/candles/?interval=2h", "invalid"),
        ("/api/market/KRW-BTC/trades/?count=abc", "invalid"),
        ("/api/market/KRW-BTC/orderbook/?levels=31", "invalid"),
    ],
)
def test_bad_input_is_a_clear_400(api: APIClient, url: str, code: str) -> None:
    response = api.get(url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_unreachable_upbit_is_a_503_not_a_500(settings) -> None:  # noqa: ANN001
    settings.UPBIT_REST_URL = f"http://127.0.0.1:{free_port()}"
    response = APIClient().get("/api/market/KRW-BTC/candles/?interval=1d")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_public_api_is_rate_limited_per_client(api: APIClient, settings) -> None:  # noqa: ANN001
    settings.MARKET_API_RATE = "3/min"
    statuses = [api.get("/api/market/KRW-BTC/ticker/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    other = APIClient(REMOTE_ADDR="127.0.0.9")
    assert other.get("/api/market/KRW-BTC/ticker/").status_code == 200


def test_endpoints_are_in_the_openapi_schema(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    for path in (
        "/api/market/markets/",
        "/api/market/{code}/candles/",
        "/api/market/exchanges/btc/",
        "/api/market/news/",
        "/api/market/{code}/orderbook/",
    ):
        assert path in schema["paths"], path


def test_websocket_snapshot_comes_from_the_simulator_over_rest(api: APIClient) -> None:
    import asyncio
    import json

    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from market.routing import websocket_urlpatterns

    async def scenario() -> dict:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/market/KRW-ETH/")
        assert (await comm.connect(timeout=5))[0]
        frame = json.loads(await comm.receive_from(timeout=5))
        await comm.disconnect()
        return frame

    snap = asyncio.run(scenario())
    data = snap["data"]
    assert snap["type"] == "snapshot" and data["stale"] is False
    asks, bids = data["orderbook"]["asks"], data["orderbook"]["bids"]
    assert len(asks) == len(bids) == 15 and asks[0][0] > bids[0][0]
    assert asks[-1][2] == pytest.approx(sum(a[1] for a in asks))
    assert data["ticker"]["market"] == "KRW-ETH" and data["ticker"]["price"] > 0
    assert data["trades"] and all(t["side"] in ("BID", "ASK") for t in data["trades"])
