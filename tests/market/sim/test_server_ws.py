"""Simulator WebSocket: request frames, formats, snapshot/realtime, PING, error frames, drop hook, private."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from market.upbit.protocol import build_jwt
from market.upbit_sim.server import SimConfig, SimulatorThread


def _open(url: str, **kw: Any) -> ClientConnection:
    return connect(url, open_timeout=5, close_timeout=2, **kw)


def _recv(ws: ClientConnection, timeout: float = 5.0) -> Any:
    frame = ws.recv(timeout=timeout)
    assert isinstance(frame, bytes), "Upbit sends binary frames"
    return json.loads(frame.decode("utf-8"))


def _collect(ws: ClientConnection, n: int, timeout: float = 8.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < n:
        out.append(_recv(ws, max(0.1, deadline - time.monotonic())))
    return out


def test_default_format_snapshot_then_realtime_with_depth_suffix(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as ws:
        ws.send(
            json.dumps(
                [
                    {"ticket": "t1"},
                    {"type": "orderbook", "codes": ["KRW-BTC.5", "KRW-ETH"]},
                    {"type": "trade", "codes": ["KRW-BTC"]},
                    {"type": "ticker", "codes": ["KRW-BTC"]},
                    {"format": "DEFAULT"},
                ]
            )
        )
        msgs = _collect(ws, 40)
    first: dict[tuple[str, str], str] = {}
    for m in msgs:
        first.setdefault((m["type"], m["code"]), m["stream_type"])
    assert first[("orderbook", "KRW-BTC")] == "SNAPSHOT"
    assert first[("orderbook", "KRW-ETH")] == "SNAPSHOT"
    assert first[("ticker", "KRW-BTC")] == "SNAPSHOT"
    assert any(m["stream_type"] == "REALTIME" for m in msgs)
    books = [m for m in msgs if m["type"] == "orderbook"]
    btc = [b for b in books if b["code"] == "KRW-BTC"]
    eth = [b for b in books if b["code"] == "KRW-ETH"]
    assert btc and all(len(b["orderbook_units"]) == 5 for b in btc)  # .5 suffix; code without it
    assert eth and all(len(b["orderbook_units"]) == 30 for b in eth)
    u = btc[0]["orderbook_units"][0]
    assert set(u) == {"ask_price", "bid_price", "ask_size", "bid_size"} and u["ask_price"] > u["bid_price"]
    assert btc[0]["level"] == 0 and btc[0]["total_ask_size"] == pytest.approx(
        sum(x["ask_size"] for x in btc[0]["orderbook_units"])
    )
    tick = next(m for m in msgs if m["type"] == "ticker")
    assert {"trade_price", "signed_change_rate", "acc_trade_volume_24h", "market_state", "ask_bid"} <= set(
        tick
    )
    trades = [m for m in msgs if m["type"] == "trade"]
    if len(trades) > 1:
        ids = [t["sequential_id"] for t in trades]
        assert ids == sorted(ids)
        assert {"best_ask_price", "best_bid_size", "trade_date", "trade_time"} <= set(trades[0])


def test_simple_and_list_formats(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as ws:
        ws.send(
            json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC.1"]}, {"format": "SIMPLE"}])
        )
        m = _recv(ws)
        assert m["ty"] == "orderbook" and m["cd"] == "KRW-BTC" and m["st"] == "SNAPSHOT"
        assert set(m["obu"][0]) == {"ap", "bp", "as", "bs"} and len(m["obu"]) == 1
        # A new request replaces the subscription (and its format).
        ws.send(
            json.dumps([{"ticket": "t"}, {"type": "ticker", "codes": ["KRW-ETH"]}, {"format": "SIMPLE_LIST"}])
        )
        deadline = time.monotonic() + 5
        while True:
            got = _recv(ws, max(0.1, deadline - time.monotonic()))
            if isinstance(got, list):
                break
        assert got[0]["ty"] == "ticker" and got[0]["cd"] == "KRW-ETH" and "tp" in got[0]
        for _ in range(5):
            later = _recv(ws)
            assert isinstance(later, list) and later[0]["ty"] == "ticker"


def test_only_snapshot_only_realtime_and_ignored_codes(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as ws:
        ws.send(
            json.dumps(
                [
                    {"ticket": "t"},
                    {
                        "type": "orderbook",
                        "codes": ["KRW-BTC", "krw-eth", "KRW-NOPE"],
                        "is_only_snapshot": True,
                    },
                ]
            )
        )
        m = _recv(ws)
        assert m["code"] == "KRW-BTC" and m["stream_type"] == "SNAPSHOT"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.6)  # nothing more: only one snapshot; lower-case/unknown codes ignored
    with _open(sim.ws_url) as ws:
        ws.send(
            json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"], "isOnlyRealtime": True}])
        )
        assert _recv(ws)["stream_type"] == "REALTIME"


def test_text_ping_gets_status_up_and_protocol_ping_gets_pong(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as ws:
        ws.send("PING")
        assert _recv(ws) == {"status": "UP"}
        assert ws.ping().wait(5)


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        ("not json", "WRONG_FORMAT"),
        (json.dumps({"ticket": "t", "type": "trade"}), "WRONG_FORMAT"),
        (json.dumps([{"type": "trade", "codes": ["KRW-BTC"]}]), "NO_TICKET"),
        (json.dumps([{"ticket": "t"}]), "NO_TYPE"),
        (json.dumps([{"ticket": "t"}, {"type": "trade"}]), "NO_CODES"),
        (json.dumps([{"ticket": "t"}, {"type": "nope", "codes": ["KRW-BTC"]}]), "INVALID_PARAM"),
        (json.dumps([{"ticket": "t"}, {"type": "trade", "codes": []}]), "INVALID_PARAM"),
        (json.dumps([{"ticket": "t"}, {"type": "myOrder"}]), "INVALID_PARAM"),  # private type on public
    ],
)
def test_error_frame_then_close_1000(sim: SimulatorThread, frame: str, name: str) -> None:
    with _open(sim.ws_url) as ws:
        ws.send(frame)
        err = _recv(ws)
        assert err["error"]["name"] == name and err["error"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=3)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_drop_hook_closes_every_socket_abruptly(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as a, _open(sim.ws_url) as b:
        for ws in (a, b):
            ws.send(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
            _recv(ws)
        r = requests.post(sim.rest_url + "/_sim/drop_websockets", timeout=5)
        assert r.json()["dropped"] >= 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(10_000):
                    ws.recv(timeout=3)
            assert closed.value.rcvd is None  # no close frame: like a network drop (1006)
    # New connections work again afterwards.
    with _open(sim.ws_url) as ws:
        ws.send(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        assert _recv(ws)["type"] == "orderbook"


def test_pause_stops_the_stream_and_resume_restarts_it(sim: SimulatorThread) -> None:
    with _open(sim.ws_url) as ws:
        ws.send(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        _recv(ws)
        requests.post(sim.rest_url + "/_sim/pause", timeout=5)
        try:
            time.sleep(0.2)
            while True:  # drain what was queued before the pause
                try:
                    ws.recv(timeout=0.3)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)
        finally:
            requests.post(sim.rest_url + "/_sim/resume", timeout=5)
        assert _recv(ws)["stream_type"] == "REALTIME"


def test_idle_socket_is_dropped() -> None:
    with (
        SimulatorThread(SimConfig(markets=["KRW-BTC"], ws_idle_timeout=1.0, backfill=False)) as sim,
        _open(sim.ws_url) as ws,
    ):
        ws.send(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        start = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while time.monotonic() - start < 10:
                ws.recv(timeout=3)
        assert time.monotonic() - start < 5


def test_private_stream_requires_auth_and_reports_my_order_and_my_asset(sim: SimulatorThread) -> None:
    with _open(sim.private_ws_url) as ws:
        ws.send(json.dumps([{"ticket": "t"}, {"type": "myOrder"}]))
        assert _recv(ws)["error"]["name"] == "INVALID_AUTH"
    acct = sim.create_account(krw="1000000")
    token = build_jwt(acct["access_key"], acct["secret_key"], None)
    with _open(sim.private_ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(json.dumps([{"ticket": "t"}, {"type": "myAsset", "codes": ["KRW-BTC"]}]))
        assert _recv(ws)["error"]["name"] == "WRONG_FORMAT"  # myAsset takes no codes
    token = build_jwt(acct["access_key"], acct["secret_key"], None)
    with _open(sim.private_ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(json.dumps([{"ticket": "t"}, {"type": "myOrder", "codes": ["KRW-BTC"]}, {"type": "myAsset"}]))
        time.sleep(0.2)
        body = {
            "market": "KRW-BTC",
            "side": "bid",
            "ord_type": "price",
            "price": "10000",
            "identifier": "ws-1",
        }
        tok = build_jwt(acct["access_key"], acct["secret_key"], list(body.items()))
        r = requests.post(
            sim.rest_url + "/v1/orders",
            data=json.dumps(body),
            timeout=5,
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        )
        assert r.status_code == 201, r.text
        msgs = _collect(ws, 4)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                msgs.append(_recv(ws, 0.3))
            except TimeoutError:
                break
    orders = [m for m in msgs if m["type"] == "myOrder"]
    assets = [m for m in msgs if m["type"] == "myAsset"]
    assert [m["state"] for m in orders][0] == "wait"
    assert "trade" in [m["state"] for m in orders] and orders[-1]["state"] in ("done", "cancel")
    assert all(
        m["uuid"] == r.json()["uuid"] and m["ask_bid"] == "BID" and m["identifier"] == "ws-1" for m in orders
    )
    trade = next(m for m in orders if m["state"] == "trade")
    assert trade["trade_uuid"] and trade["is_maker"] is False and trade["trade_fee"] > 0
    assert assets and {a["currency"] for m in assets for a in m["assets"]} >= {"KRW", "BTC"}
