"""A fuzz of every WebSocket route on the real ASGI server (uvicorn subprocess): random text, binary, deeply
nested and oversized frames on /ws/market/<code>/ and /ws/user/, and random paths. Every bad frame is answered
with an error frame and the socket keeps working; every bad path or credential is closed with a documented
code (4400, 4401, 4404); no socket ever ends with 1011 or without a close frame, and the server logs no
traceback."""

from __future__ import annotations

import asyncio
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
import websockets
from django.test import Client

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SEED = 13
DOCUMENTED_CLOSE = {4400, 4401, 4404}


@pytest.fixture(autouse=True)
def _no_upbit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autouse, so it runs before the ASGI server starts: Upbit is a port nothing listens on (the market
    list is then "unavailable", and every well-formed code is let through to the stream)."""
    monkeypatch.setenv("UPBIT_REST_URL", "http://127.0.0.1:9")


@pytest.fixture
def user(transactional_db: Any) -> Any:
    from tests.accounts.factories import UserFactory

    return UserFactory()


def _bad_frames(rng: random.Random) -> list[tuple[str, str | bytes]]:
    """(kind, frame) pairs a consumer must answer with an error frame."""
    frames: list[tuple[str, str | bytes]] = [
        ("nested", "[" * 1000 + "]" * 1000),
        ("nested", '{"a": ' + "[" * 20_000 + "]" * 20_000 + "}"),
        ("huge", json.dumps({"action": "ping", "pad": "x" * 100_000})),
        ("huge", "[" + ",".join(["1"] * 40_000) + "]"),
        ("text", ""),
        ("text", "{"),
        ("text", "NaN-ish \x00\x01"),
        ("binary", b""),
        ("binary", b"\x00\xff" * 100),
        ("binary", json.dumps({"type": "ping"}).encode()),
    ]
    alphabet = string.printable + "가나다라５٥\u200b\ud7a3"
    for _ in range(15):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))
        try:
            json.loads(text)
        except ValueError:
            frames.append(("text", text))
    for _ in range(10):
        frames.append(("binary", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))))
    return frames


def _odd_json(rng: random.Random) -> list[Any]:
    """Valid JSON a consumer does not expect: ignored or answered, never fatal."""
    values: list[Any] = [None, 0, -1, 2**70, 1.5e308, "ping", [], {}, [1, [2, [3]]], {"type": None}]
    values += [{"action": "subscribe", "market": m} for m in ["", "KRW-", "krw-btc", "X" * 500, 5, None]]
    values += [{"action": rng.choice(["subscribe", "ping", "zzz", None, 1])} for _ in range(5)]
    values += [{"type": "ping", "extra": list(range(100))}, {"action": "ping", "market": {"a": [1]}}]
    return values


async def _error_reply(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next error frame (market sockets also stream snapshots and updates in between)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        raw = await asyncio.wait_for(ws.recv(), max(0.1, remaining))
        msg = json.loads(raw)
        if isinstance(msg, dict) and msg.get("type") == "error":
            return msg


async def _pong(ws: Any, ping: dict[str, Any], timeout: float = 10.0) -> None:
    await ws.send(json.dumps(ping))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, remaining)))
        if isinstance(msg, dict) and msg.get("type") == "pong":
            return


async def _fuzz_socket(
    url: str, origin: str, headers: dict[str, str], ping: dict[str, Any]
) -> dict[str, int]:
    rng = random.Random(SEED)
    counts = {"bad": 0, "answered": 0, "odd": 0}
    async with websockets.connect(
        url, additional_headers=headers, origin=origin, open_timeout=15, max_size=None
    ) as ws:
        for kind, frame in _bad_frames(rng):
            counts["bad"] += 1
            await ws.send(frame)
            reply = await _error_reply(ws)
            assert reply["data"]["code"] and reply["data"]["message"], (kind, reply)
            counts["answered"] += 1
        for value in _odd_json(rng):
            counts["odd"] += 1
            await ws.send(json.dumps(value))
        await _pong(ws, ping)  # still alive after all of it
        await ws.close()
    return counts


async def _close_code(url: str, origin: str, headers: dict[str, str] | None = None) -> int | str | None:
    try:
        async with websockets.connect(
            url, additional_headers=headers or {}, origin=origin, open_timeout=15
        ) as ws:
            while True:
                await asyncio.wait_for(ws.recv(), 15)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else "abrupt"
    except websockets.InvalidStatus as exc:
        return f"http {exc.response.status_code}"


def _server_log(tmp_path: Path) -> str:
    path = tmp_path / "asgi.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_every_socket_route_survives_random_and_malformed_frames(user, asgi_server, tmp_path) -> None:
    browser = Client()
    browser.force_login(user)
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    ws_base = asgi_server.replace("http://", "ws://")

    market = asyncio.run(_fuzz_socket(f"{ws_base}/ws/market/KRW-BTC/", asgi_server, {}, {"type": "ping"}))
    mine = asyncio.run(_fuzz_socket(f"{ws_base}/ws/user/", asgi_server, cookie, {"type": "ping"}))
    print(f"ws fuzz: market {market}, user {mine}")
    assert market["answered"] == market["bad"] >= 35
    assert mine["answered"] == mine["bad"] >= 35
    log = _server_log(tmp_path)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_random_socket_paths_and_credentials_close_with_documented_codes(user, asgi_server, tmp_path) -> None:
    rng = random.Random(SEED)
    ws_base = asgi_server.replace("http://", "ws://")
    safe = string.ascii_letters + string.digits + "-_.~%"
    paths = ["/ws/", "/ws", "/ws/nope/", "/ws/market/", "/ws/market//", "/ws/market/KRW-BTC", "/ws/user/x/"]
    paths += [f"/ws/market/KRW-{'X' * n}/" for n in (37, 41, 200)]
    paths += ["/ws/market/%00/", "/ws/market/..%2F..%2Fetc/", "/ws/market/%ED%95%9C/"]
    paths += ["/ws/market/KRW-BTC/x/", "/ws/user", "/ws/user//"]
    paths += ["/" + "".join(rng.choice(safe + "/") for _ in range(rng.randint(1, 80))) for _ in range(20)]
    codes: dict[str, Any] = {}
    for path in paths:
        codes[path] = asyncio.run(_close_code(ws_base + path, asgi_server))
    # /ws/user/ without a session, with a forged one, with a session of a deleted user.
    codes["user:none"] = asyncio.run(_close_code(f"{ws_base}/ws/user/", asgi_server))
    codes["user:forged"] = asyncio.run(
        _close_code(f"{ws_base}/ws/user/", asgi_server, {"Cookie": "sessionid=" + "z" * 32})
    )
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value
    user.delete()
    codes["user:deleted"] = asyncio.run(
        _close_code(f"{ws_base}/ws/user/", asgi_server, {"Cookie": f"sessionid={session}"})
    )
    print(f"ws paths: {len(codes)} tried, codes {sorted({str(c) for c in codes.values()})}")
    bad = {path: code for path, code in codes.items() if code not in DOCUMENTED_CLOSE}
    assert not bad, bad
    assert {codes["user:none"], codes["user:forged"], codes["user:deleted"]} == {4401}
    log = _server_log(tmp_path)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
