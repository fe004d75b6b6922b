"""The real thing for the dashboard: a prediction served by the ML worker code reaches a browser's market
WebSocket (/ws/market/<CODE>/) on the real ASGI server - through the web process's relay in embedded mode,
or the shared Redis layer in production."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from celery_app import app
from mlmodel import serving, tasks
from mlmodel.services.registry import model_promote
from tests.autotrade.test_e2e_celery import batch, register

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
MARKET = "KRW-BTC"


@pytest.fixture
def sim_for_children(sim, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """The ASGI server (a child process) reads markets and books from this simulator too."""
    monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
    return sim


def test_prediction_reaches_the_browsers_market_socket(
    sim_for_children, asgi_server, settings, monkeypatch: pytest.MonkeyPatch
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    serving.reset_server()
    model_promote(version=register(1, 0.0042))
    # This process plays the ml worker: its pushes go through the web process, as in embedded mode.
    monkeypatch.setenv("OBSERVATOR_ROLE", "worker")
    settings.REALTIME_RELAY_URL = f"{asgi_server}/internal/realtime/"
    monkeypatch.setattr(app, "send_task", lambda *a, **kw: None)  # auto-trading is not under test here
    ws_url = asgi_server.replace("http://", "ws://") + f"/ws/market/{MARKET}/"

    async def scenario() -> dict:
        async with websockets.connect(ws_url, origin=asgi_server, open_timeout=10) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["type"] == "snapshot"
            served = await asyncio.to_thread(
                tasks.ingest_market_data.run, batch=batch(12, int(time.time() * 1000))
            )
            assert served == 1
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "prediction":
                    return frame
            raise AssertionError("no prediction frame")

    frame = asyncio.run(scenario())
    data = frame["data"]
    assert frame["market"] == MARKET and data["market"] == MARKET
    assert data["predicted_return"] == pytest.approx(0.0042) and data["horizon_s"] == 10.0
    assert data["model_version"] == "const v1"
