"""``/ws/user/``: a logged-in user's socket receives their own order events, and nobody else's."""

from __future__ import annotations

import msgspec
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from observator.asgi import application
from tests.trading.conftest import d
from trading import services
from trading.messages import BalancesEvent, OrderEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _communicator(client, user) -> WebsocketCommunicator:
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return WebsocketCommunicator(
        application,
        "/ws/user/",
        headers=[(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )


def test_user_socket_gets_own_order_events_only(client, user, other_user, sim):
    mine = _communicator(client, user)

    async def scenario() -> None:
        connected, _ = await mine.connect(timeout=5)
        assert connected
        hello = await mine.receive_json_from(timeout=5)
        assert hello == {"type": "hello", "data": {"mode": "paper", "resync": True}}

        from channels.db import database_sync_to_async

        await database_sync_to_async(services.order_place)(
            user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000)
        )
        event = await mine.receive_json_from(timeout=5)
        assert event["type"] == "order" and set(event) == {"type", "data"}
        order = msgspec.convert(event["data"], OrderEvent).order  # exactly the documented fields
        assert order.market == "KRW-BTC" and order.state == "done" and order.mode == "paper"
        balances = await mine.receive_json_from(timeout=5)
        assert balances["type"] == "balances"
        typed = msgspec.convert(balances["data"], BalancesEvent)
        assert typed.mode == "paper" and {b.currency for b in typed.balances or []} == {"KRW", "BTC"}

        await database_sync_to_async(services.order_place)(
            user=other_user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000)
        )
        assert await mine.receive_nothing(timeout=0.5)
        await mine.disconnect()

    async_to_sync(scenario)()


def test_anonymous_socket_is_refused(db):
    async def scenario() -> None:
        comm = WebsocketCommunicator(
            application, "/ws/user/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        )
        connected, _ = await comm.connect(timeout=5)
        assert connected  # then closed with 4401, which the page reads as "session expired"
        assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()


@pytest.mark.parametrize("how", ["ping", "timer"])
def test_open_socket_is_closed_with_4401_once_the_session_is_deleted(client, user, settings, how):
    """Issue 13: a page stayed "Live" after its session was deleted server-side. The socket now re-reads the
    session on every ping and every WS_SESSION_RECHECK_S."""
    from django.contrib.sessions.models import Session

    settings.WS_SESSION_RECHECK_S = 0.2 if how == "timer" else 3600
    comm = _communicator(client, user)

    async def scenario() -> None:
        from channels.db import database_sync_to_async

        connected, _ = await comm.connect(timeout=5)
        assert connected
        assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
        await comm.send_json_to({"type": "ping"})
        assert await comm.receive_json_from(timeout=5) == {"type": "pong"}  # still valid: answered
        await database_sync_to_async(lambda: Session.objects.all().delete())()
        if how == "ping":
            await comm.send_json_to({"type": "ping"})
        assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        await comm.wait(timeout=5)

    async_to_sync(scenario)()
