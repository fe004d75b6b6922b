"""Simulator REST: quotation endpoints, exchange auth per §2.4, rate limits, and an order round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from market.upbit.protocol import build_jwt, parse_remaining_req
from market.upbit_sim.server import SimConfig, SimulatorThread


@pytest.fixture(autouse=True)
def _fresh_rate_buckets(request: pytest.FixtureRequest) -> None:
    """The module's simulator is shared: a case must not inherit the previous case's requests in the same
    second (a burst of candle reads there made a later case meet a 429 under load)."""
    if "sim" in request.fixturenames:
        sim: SimulatorThread = request.getfixturevalue("sim")
        sim.call(lambda s: s.limiter.reset())


def _get(sim: SimulatorThread, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.rest_url + path, params=params, timeout=5)


def _signed(
    sim: SimulatorThread,
    method: str,
    path: str,
    acct: dict[str, str],
    params: list[tuple[str, str]] | None = None,
    body: dict[str, Any] | None = None,
    token: str | None = None,
) -> requests.Response:
    hashed: list[tuple[str, Any]] | None = list(body.items()) if body else params
    token = token or build_jwt(acct["access_key"], acct["secret_key"], hashed)
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
        return requests.request(
            method, sim.rest_url + path, data=json.dumps(body), headers=headers, timeout=5
        )
    return requests.request(method, sim.rest_url + path, params=params, headers=headers, timeout=5)


# ------------------------------------------------------------------------------------------------ quotation


def test_market_all_ticker_orderbook_instruments(sim: SimulatorThread) -> None:
    r = _get(sim, "/v1/market/all", is_details="true")
    assert r.status_code == 200
    assert [m["market"] for m in r.json()] == ["KRW-BTC", "KRW-ETH"]
    assert r.json()[0]["korean_name"] == "비트코인" and "market_event" in r.json()[0]
    assert parse_remaining_req(r.headers["Remaining-Req"]).group == "market"

    t = _get(sim, "/v1/ticker", markets="KRW-BTC,krw-eth").json()
    assert [x["market"] for x in t] == ["KRW-BTC", "KRW-ETH"]
    assert isinstance(t[0]["trade_price"], float) and t[0]["change"] in ("RISE", "EVEN", "FALL")
    assert len(t[0]["trade_date"]) == 8 and len(t[0]["trade_time_kst"]) == 6

    ob = _get(sim, "/v1/orderbook", markets="KRW-BTC", count="5").json()[0]
    assert ob["market"] == "KRW-BTC" and len(ob["orderbook_units"]) == 5 and ob["level"] == 0
    u = ob["orderbook_units"]
    assert u[0]["ask_price"] > u[0]["bid_price"]
    assert all(x["ask_price"] % 1000 == 0 for x in u)
    assert ob["total_ask_size"] == pytest.approx(sum(x["ask_size"] for x in u))
    assert _get(sim, "/v1/orderbook", markets="KRW-BTC", level="10000").json() == []
    assert len(_get(sim, "/v1/orderbook", markets="KRW-BTC", count="99").json()[0]["orderbook_units"]) == 30

    ins = _get(sim, "/v1/orderbook/instruments", markets="KRW-BTC").json()
    assert ins == [
        {"market": "KRW-BTC", "quote_currency": "KRW", "tick_size": "1000", "supported_levels": ["0"]}
    ]


def test_quotation_errors_use_integer_names(sim: SimulatorThread) -> None:
    r = _get(sim, "/v1/ticker", markets="KRW-NOPE")
    assert r.status_code == 404 and r.json() == {"error": {"name": 404, "message": "Code not found"}}
    r = _get(sim, "/v1/ticker")
    assert r.status_code == 400 and r.json()["error"]["name"] == 400
    r = _get(sim, "/v1/candles/minutes/7", market="KRW-BTC")
    assert r.status_code == 400 and r.json()["error"] == {
        "name": 400,
        "message": "specified unit is not valid.",
    }


def test_candles_and_trades(sim: SimulatorThread) -> None:
    sim.call(lambda s: s.step(s.now_ms() + 60_000))  # make sure trades exist
    days = _get(sim, "/v1/candles/days", market="KRW-BTC", count="300").json()
    assert 150 <= len(days) <= 200  # count is clamped to 200
    assert days[0]["candle_date_time_utc"] > days[1]["candle_date_time_utc"]  # newest first
    assert days[0]["candle_date_time_utc"].endswith("T00:00:00") and "prev_closing_price" in days[0]
    m5 = _get(sim, "/v1/candles/minutes/5", market="KRW-BTC", count="3").json()
    assert (
        len(m5) == 3
        and m5[0]["unit"] == 5
        and m5[0]["candle_date_time_utc"][-5:-3] in {f"{i:02d}" for i in range(0, 60, 5)}
    )
    # ``to`` is exclusive: paging with the oldest candle's time returns older candles only.
    older = _get(
        sim, "/v1/candles/minutes/5", market="KRW-BTC", count="2", to=m5[-1]["candle_date_time_utc"]
    ).json()
    assert older[0]["candle_date_time_utc"] < m5[-1]["candle_date_time_utc"]
    assert len(_get(sim, "/v1/candles/weeks", market="KRW-BTC", count="4").json()) == 4
    assert len(_get(sim, "/v1/candles/months", market="KRW-BTC", count="2").json()) == 2
    ticks = _get(sim, "/v1/trades/ticks", market="KRW-BTC", count="5").json()
    assert len(ticks) == 5 and ticks[0]["timestamp"] >= ticks[-1]["timestamp"]
    assert {"trade_date_utc", "trade_time_utc", "sequential_id", "ask_bid", "prev_closing_price"} <= set(
        ticks[0]
    )
    page2 = _get(
        sim, "/v1/trades/ticks", market="KRW-BTC", count="5", cursor=str(ticks[-1]["sequential_id"])
    ).json()
    assert page2 and all(t["sequential_id"] < ticks[-1]["sequential_id"] for t in page2)


# ---------------------------------------------------------------------------------------------------- auth


def test_good_token_passes_and_accounts_are_strings(sim: SimulatorThread) -> None:
    acct = sim.create_account(krw="1000000", assets={"BTC": {"balance": "0.5", "avg_buy_price": "140000000"}})
    r = _signed(sim, "GET", "/v1/accounts", acct)
    assert r.status_code == 200, r.text
    rows = {x["currency"]: x for x in r.json()}
    assert rows["KRW"]["balance"] == "1000000" and rows["BTC"]["avg_buy_price"] == "140000000"
    assert rows["BTC"]["unit_currency"] == "KRW" and rows["BTC"]["avg_buy_price_modified"] is False
    rr = parse_remaining_req(r.headers["Remaining-Req"])
    assert rr is not None and rr.group == "default" and rr.min == 1800 and rr.sec == 29
    # HS512 is accepted too.
    token = build_jwt(acct["access_key"], acct["secret_key"], None, alg="HS512")
    assert _signed(sim, "GET", "/v1/accounts", acct, token=token).status_code == 200


def _error(r: requests.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["name"]


def test_auth_failures_have_upbit_names(sim: SimulatorThread) -> None:
    acct = sim.create_account(krw="1000")
    url = sim.rest_url + "/v1/accounts"
    assert _error(requests.get(url, timeout=5)) == (401, "no_authorization_token")
    bad_sig = build_jwt(acct["access_key"], "not-the-secret", None)
    assert _error(_signed(sim, "GET", "/v1/accounts", acct, token=bad_sig)) == (401, "jwt_verification")
    unknown = build_jwt("no-such-key", acct["secret_key"], None)
    assert _error(_signed(sim, "GET", "/v1/accounts", acct, token=unknown)) == (401, "invalid_access_key")
    reused = build_jwt(acct["access_key"], acct["secret_key"], None, nonce="fixed-nonce")
    assert _signed(sim, "GET", "/v1/accounts", acct, token=reused).status_code == 200
    assert _error(_signed(sim, "GET", "/v1/accounts", acct, token=reused)) == (401, "nonce_used")
    wrong_hash = build_jwt(acct["access_key"], acct["secret_key"], [("market", "KRW-ETH")])
    r = _signed(sim, "GET", "/v1/orders/chance", acct, params=[("market", "KRW-BTC")], token=wrong_hash)
    assert _error(r) == (401, "invalid_query_payload")
    no_hash = build_jwt(acct["access_key"], acct["secret_key"], None)
    r = _signed(sim, "GET", "/v1/orders/chance", acct, params=[("market", "KRW-BTC")], token=no_hash)
    assert _error(r) == (401, "invalid_query_payload")
    expired = sim.create_account(krw="1", expired=True)
    assert _error(_signed(sim, "GET", "/v1/accounts", expired)) == (401, "expired_access_key")
    # A POST body's fields are hashed in body order: a token for other values is rejected.
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "5000"}
    tok = build_jwt(acct["access_key"], acct["secret_key"], list({**body, "price": "6000"}.items()))
    assert _error(_signed(sim, "POST", "/v1/orders", acct, body=body, token=tok)) == (
        401,
        "invalid_query_payload",
    )


@pytest.fixture
def paused(sim: SimulatorThread):  # noqa: ANN201
    """The market stands still (no source trades can fill our resting orders mid-test)."""
    assert requests.post(sim.rest_url + "/_sim/pause", timeout=5).json()["paused"] is True
    yield sim
    requests.post(sim.rest_url + "/_sim/resume", timeout=5)


def test_order_round_trip_over_rest(paused: SimulatorThread) -> None:
    sim = paused
    acct = sim.create_account(krw="10000000")
    ob = _get(sim, "/v1/orderbook", markets="KRW-BTC").json()[0]["orderbook_units"]
    low = int(ob[0]["bid_price"]) - 5_000  # five ticks under the best bid: rests
    body = {
        "market": "KRW-BTC",
        "side": "bid",
        "volume": "0.01",
        "price": str(low),
        "ord_type": "limit",
        "identifier": "rt-1",
    }
    r = _signed(sim, "POST", "/v1/orders", acct, body=body)
    assert r.status_code == 201, r.text
    o = r.json()
    assert o["state"] == "wait" and o["identifier"] == "rt-1" and o["price"] == str(low)
    assert o["locked"] == str(int(low * 0.01 * 1.0005)) or float(o["locked"]) == pytest.approx(
        low * 0.01 * 1.0005
    )
    assert isinstance(o["trades_count"], int) and o["created_at"].endswith("+09:00")
    # The resting order shows in the public book at its price.
    ob2 = _get(sim, "/v1/orderbook", markets="KRW-BTC").json()[0]["orderbook_units"]
    before = {u["bid_price"]: u["bid_size"] for u in ob}.get(low, 0.0)
    after = {u["bid_price"]: u["bid_size"] for u in ob2}[low]
    assert after == pytest.approx(before + 0.01)

    dup = _signed(sim, "POST", "/v1/orders", acct, body=body)
    assert _error(dup) == (400, "duplicate_identifier")
    got = _signed(sim, "GET", "/v1/order", acct, params=[("identifier", "rt-1")]).json()
    assert got["uuid"] == o["uuid"] and got["trades"] == []
    opens = _signed(sim, "GET", "/v1/orders/open", acct, params=[("market", "KRW-BTC")]).json()
    assert [x["uuid"] for x in opens] == [o["uuid"]]
    by_ids = _signed(sim, "GET", "/v1/orders/uuids", acct, params=[("uuids[]", o["uuid"])]).json()
    assert [x["uuid"] for x in by_ids] == [o["uuid"]]
    c = _signed(sim, "DELETE", "/v1/order", acct, params=[("uuid", o["uuid"])])
    assert c.status_code == 200 and c.json()["uuid"] == o["uuid"]
    assert _signed(sim, "GET", "/v1/order", acct, params=[("uuid", o["uuid"])]).json()["state"] == "cancel"
    closed = _signed(sim, "GET", "/v1/orders/closed", acct, params=[("states[]", "cancel")]).json()
    assert [x["uuid"] for x in closed] == [o["uuid"]]
    assert _error(_signed(sim, "GET", "/v1/order", acct, params=[("uuid", "nope")])) == (
        404,
        "order_not_found",
    )

    buy = _signed(
        sim,
        "POST",
        "/v1/orders",
        acct,
        body={"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "100000"},
    )
    assert buy.status_code == 201 and buy.json()["state"] in ("done", "cancel")
    assert float(buy.json()["executed_volume"]) > 0
    low_total = _signed(
        sim,
        "POST",
        "/v1/orders",
        acct,
        body={"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "4000"},
    )
    assert _error(low_total) == (400, "under_min_total_bid")
    chance = _signed(sim, "GET", "/v1/orders/chance", acct, params=[("market", "KRW-BTC")]).json()
    assert chance["bid_fee"] == "0.0005" and float(chance["ask_account"]["balance"]) > 0
    # Form-encoded order bodies are refused (JSON only since 2022).
    form = requests.post(
        sim.rest_url + "/v1/orders",
        data={"market": "KRW-BTC"},
        timeout=5,
        headers={"Authorization": "Bearer x"},
    )
    assert form.status_code == 400


def test_rate_limit_429_and_remaining_req() -> None:
    cfg = SimConfig(
        markets=["KRW-BTC"], rate_limits={"ticker": 3, "default": 2, "websocket-connect": 1}, backfill=False
    )
    with SimulatorThread(cfg) as sim:
        sim.call(lambda s: s.step(s.now_ms() + 1000))
        acct = sim.create_account(krw="1")
        now = [1_000.0]  # the limiter's clock, frozen: every request below falls in one window
        sim.call(lambda s: setattr(s.limiter, "clock", lambda: now[0]))
        seen = [_get(sim, "/v1/ticker", markets="KRW-BTC") for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        assert [parse_remaining_req(r.headers["Remaining-Req"]).sec for r in seen] == [2, 1, 0, 0]
        assert seen[3].text == "Too many API requests."
        assert parse_remaining_req(seen[3].headers["Remaining-Req"]).group == "ticker"
        # Other groups have their own buckets.
        assert _get(sim, "/v1/orderbook", markets="KRW-BTC").status_code == 200
        ex = [_signed(sim, "GET", "/v1/accounts", acct) for _ in range(3)]
        assert [r.status_code for r in ex] == [200, 200, 429]
        now[0] = 1_001.0
        assert _get(sim, "/v1/ticker", markets="KRW-BTC").status_code == 200  # the next second is fresh
        # WebSocket upgrades have their own per-IP bucket (Upbit: 5/s; here 1/s).
        first = requests.get(
            sim.ws_url.replace("ws://", "http://"),
            timeout=5,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        second = requests.get(sim.ws_url.replace("ws://", "http://"), timeout=5)
        assert first.status_code == 101
        assert second.status_code == 429 and second.text == "Too many API requests."


def test_admin_api_creates_accounts_and_deposits(sim: SimulatorThread) -> None:
    r = requests.post(
        sim.rest_url + "/_sim/accounts", json={"krw": "5000", "assets": {"ETH": "1"}}, timeout=5
    )
    assert r.status_code == 201
    acct = r.json()
    assert set(acct) == {"account_id", "access_key", "secret_key"}
    d = requests.post(
        f"{sim.rest_url}/_sim/accounts/{acct['account_id']}/deposit",
        json={"currency": "KRW", "amount": "1000"},
        timeout=5,
    )
    assert d.json()["balance"] == "6000"
    rows = {x["currency"]: x["balance"] for x in _signed(sim, "GET", "/v1/accounts", acct).json()}
    assert rows == {"KRW": "6000", "ETH": "1"}
    bad = requests.post(sim.rest_url + "/_sim/accounts", json={"krw": "-1"}, timeout=5)
    assert bad.status_code == 400
    state = requests.get(sim.rest_url + "/_sim/state", timeout=5).json()
    assert state["markets"] == ["KRW-BTC", "KRW-ETH"] and state["published_books"] > 0


@pytest.mark.parametrize(
    ("method", "path", "params", "raw"),
    [
        ("DELETE", "/v1/orders/open", [("count", "abc")], None),
        ("GET", "/v1/orders/open", [("page", "x")], None),
        ("GET", "/v1/orders/closed", [("start_time", "garbage")], None),
        ("GET", "/v1/orders/uuids", [("uuids[]", "x"), ("identifiers[]", "y")], None),
        ("GET", "/v1/order", None, None),
        ("POST", "/v1/orders", None, "[1, 2]"),
        ("POST", "/v1/orders", None, "{not json"),
        (
            "POST",
            "/v1/orders",
            None,
            '{"market":"KRW-BTC","side":"bid","ord_type":"limit","price":"1e400","volume":"1"}',
        ),
        (
            "POST",
            "/v1/orders",
            None,
            '{"market":"KRW-BTC","side":"bid","ord_type":"limit","price":{"a":1},"volume":"1"}',
        ),
        (
            "POST",
            "/v1/orders",
            None,
            '{"market":"KRW-BTC","side":"bid","ord_type":"limit","price":"1","volume":"NaN"}',
        ),
    ],
)
def test_bad_exchange_input_is_a_400_validation_error(
    sim: SimulatorThread, method: str, path: str, params: list | None, raw: str | None
) -> None:
    acct = sim.create_account(krw="100000")
    hashed = list(json.loads(raw).items()) if raw and raw.startswith('{"') else params
    token = build_jwt(acct["access_key"], acct["secret_key"], hashed)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    r = requests.request(method, sim.rest_url + path, params=params, data=raw, headers=headers, timeout=5)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["name"] == "validation_error"


@pytest.mark.parametrize(
    "query",
    [
        "/v1/trades/ticks?market=KRW-BTC&count=abc",
        "/v1/trades/ticks?market=KRW-BTC&to=25:99:99",
        "/v1/trades/ticks?market=KRW-BTC&days_ago=9",
        "/v1/candles/minutes/1?market=KRW-BTC&to=zzz",
        "/v1/orderbook?markets=KRW-BTC&level=abc",
        "/v1/ticker?markets=",
        "/v1/no-such-endpoint",
    ],
)
def test_bad_quotation_input_gets_an_integer_named_error(sim: SimulatorThread, query: str) -> None:
    r = requests.get(sim.rest_url + query, timeout=5)
    assert r.status_code in (400, 404)
    assert r.json()["error"]["name"] == r.status_code


def test_orders_test_endpoint_validates_without_placing(sim: SimulatorThread) -> None:
    acct = sim.create_account(krw="100000")
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "10000", "identifier": "t-1"}
    r = _signed(sim, "POST", "/v1/orders/test", acct, body=body)
    assert r.status_code == 201 and r.json()["ord_type"] == "price" and r.json()["identifier"] == "t-1"
    assert parse_remaining_req(r.headers["Remaining-Req"]).group == "order-test"
    rows = {x["currency"]: x for x in _signed(sim, "GET", "/v1/accounts", acct).json()}
    assert rows["KRW"]["balance"] == "100000" and "BTC" not in rows  # nothing placed, nothing held
    assert _signed(sim, "GET", "/v1/orders/closed", acct).json() == []
    # The identifier was not used up by the test order, and a real one may follow.
    assert _signed(sim, "POST", "/v1/orders", acct, body=body).status_code == 201
    bad = {**body, "identifier": "t-2", "price": "1000"}
    assert _error(_signed(sim, "POST", "/v1/orders/test", acct, body=bad)) == (400, "under_min_total_bid")


def test_cancel_and_new_over_rest(paused: SimulatorThread) -> None:
    sim = paused
    acct = sim.create_account(krw="10000000")
    bid = int(_get(sim, "/v1/orderbook", markets="KRW-BTC").json()[0]["orderbook_units"][0]["bid_price"])
    body = {
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "limit",
        "price": str(bid - 50_000),
        "volume": "0.01",
    }
    old = _signed(sim, "POST", "/v1/orders", acct, body=body).json()
    swap = {
        "prev_order_uuid": old["uuid"],
        "new_ord_type": "limit",
        "new_price": str(bid - 40_000),
        "new_volume": "remain_only",
        "new_identifier": "swap-1",
    }
    r = _signed(sim, "POST", "/v1/orders/cancel_and_new", acct, body=swap)
    assert r.status_code == 201, r.text
    assert r.json()["uuid"] == old["uuid"] and r.json()["new_order_identifier"] == "swap-1"
    assert parse_remaining_req(r.headers["Remaining-Req"]).group == "order"
    new = _signed(sim, "GET", "/v1/order", acct, params=[("uuid", r.json()["new_order_uuid"])]).json()
    assert new["price"] == str(bid - 40_000) and new["volume"] == "0.01" and new["state"] == "wait"
    assert _signed(sim, "GET", "/v1/order", acct, params=[("uuid", old["uuid"])]).json()["state"] == "cancel"


def test_ticker_rolls_24h_sums_and_day_fields_from_history_and_live_trades(sim: SimulatorThread) -> None:
    t = _get(sim, "/v1/ticker", markets="KRW-BTC").json()[0]
    assert t["acc_trade_volume_24h"] > t["acc_trade_volume"] > 0  # 24 h reaches into yesterday's history
    assert t["low_price"] <= t["trade_price"] <= t["high_price"]
    assert t["signed_change_price"] == pytest.approx(t["trade_price"] - t["prev_closing_price"])
    assert t["change_rate"] == pytest.approx(abs(t["signed_change_rate"]))
    assert t["lowest_52_week_price"] <= t["trade_price"] <= t["highest_52_week_price"]


# ------------------------------------------------------------------------------------------- issue 12 gaps


def test_order_rate_limit_is_upbits_kr_12_per_second() -> None:
    """Upbit KR allows 12 POST /v1/orders a second (§3.1, since 2026-08-21); the 13th in a second is a 429."""
    with SimulatorThread(SimConfig(markets=["KRW-BTC"], backfill=False)) as sim:
        sim.call(lambda s: s.step(s.now_ms() + 1000))
        acct = sim.create_account(krw="1")
        now = [1_000.0]
        sim.call(lambda s: setattr(s.limiter, "clock", lambda: now[0]))
        body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000"}
        seen = [_signed(sim, "POST", "/v1/orders", acct, body=body) for _ in range(13)]
        assert [r.status_code for r in seen[:12]] == [400] * 12  # validated (too small), not limited
        assert seen[12].status_code == 429
        hdr = parse_remaining_req(seen[0].headers["Remaining-Req"])
        assert (hdr.group, hdr.sec) == ("order", 11)


def test_second_and_year_candles(sim: SimulatorThread) -> None:
    sim.call(lambda s: s.step(s.now_ms() + 5_000))
    secs = _get(sim, "/v1/candles/seconds", market="KRW-BTC", count="3")
    assert secs.status_code == 200 and parse_remaining_req(secs.headers["Remaining-Req"]).group == "candles"
    rows = secs.json()
    assert len(rows) == 3 and rows[0]["candle_date_time_utc"] > rows[1]["candle_date_time_utc"]
    assert {"opening_price", "high_price", "low_price", "trade_price", "timestamp"} <= set(rows[0])
    assert "unit" not in rows[0] and rows[0]["market"] == "KRW-BTC"
    for r in rows:
        assert r["low_price"] <= r["trade_price"] <= r["high_price"]
    # The paced market may trade between two requests: the year's close is the last day's, read just before
    # or just after.
    before = _get(sim, "/v1/candles/days", market="KRW-BTC", count="1").json()
    years = _get(sim, "/v1/candles/years", market="KRW-BTC", count="5").json()
    after = _get(sim, "/v1/candles/days", market="KRW-BTC", count="1").json()
    assert 1 <= len(years) <= 2  # the backfilled history is ~200 days
    assert years[0]["candle_date_time_utc"].endswith("-01-01T00:00:00")
    assert years[0]["first_day_of_period"].endswith("-01-01")
    assert years[0]["trade_price"] in (before[0]["trade_price"], after[0]["trade_price"])
    sim.call(lambda s: s.limiter.reset())  # five candle reads so far: the error case must not meet a 429
    bad = _get(sim, "/v1/candles/seconds", market="KRW-NOPE")
    assert bad.status_code == 404 and bad.json()["error"]["name"] == 404


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/orders/nope"), ("POST", "/v1/accounts/x")])
def test_unknown_exchange_paths_answer_like_the_exchange_api(
    sim: SimulatorThread, method: str, path: str
) -> None:
    r = requests.request(method, sim.rest_url + path, timeout=5)
    assert r.status_code == 404
    assert r.json()["error"]["name"] == "not_found"  # a snake_case name, not the quotation API's 404
    assert parse_remaining_req(r.headers["Remaining-Req"]).group == "default"
