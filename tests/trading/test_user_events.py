"""Issue 15: every user event a trading service publishes is its declared ``trading.messages`` Struct.

Each event is read where the browser's socket reads it (the user's channel-layer group, in-memory layer),
turned into the browser frame, and decoded with msgspec into the Struct its ``kind`` names: no field the
Struct lacks, none it requires missing, and re-encoding it gives the same JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from tests.trading.conftest import d
from trading import messages, services
from trading.messages import UserEvent, user_event_frame
from trading.services.profiles import auto_trading_halt
from trading.services.realtime import user_event_publish, user_group

pytestmark = pytest.mark.django_db


@pytest.fixture
def listen(user: Any, settings: Any) -> str:
    """A channel in the user's group on the in-memory layer (what their socket would be)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    return channel


def received(channel: str, events: dict[str, type[UserEvent]] | None = None) -> list[UserEvent]:
    """Every event waiting on ``channel``, decoded strictly into its declared Struct (in the order sent)."""
    events = events or messages.USER_EVENTS
    layer = get_channel_layer()
    raw: list[dict[str, Any]] = []

    async def _get() -> None:
        while True:
            try:
                raw.append(await asyncio.wait_for(layer.receive(channel), timeout=0.05))
            except TimeoutError:
                return

    async_to_sync(_get)()
    out = []
    for message in raw:
        assert message["type"] == "user.event"
        wire = msgspec.json.decode(msgspec.json.encode(user_event_frame(message["data"])))
        assert set(wire) == {"type", "data"}, wire
        struct = events[wire["type"]]
        assert struct.kind == wire["type"]
        assert struct.__struct_config__.forbid_unknown_fields  # a field the Struct lacks fails the decode
        typed = msgspec.convert(wire["data"], struct)
        assert msgspec.to_builtins(typed) == wire["data"]  # nothing lost or renamed on the way
        out.append(typed)
    return out


def test_paper_order_pushes_its_order_and_balances_structs(
    user: Any, sim: Any, listen: str, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    order, balances = received(listen)
    assert isinstance(order, messages.OrderEvent) and isinstance(balances, messages.BalancesEvent)
    assert (order.order.market, order.order.mode, order.order.state) == ("KRW-BTC", "paper", "done")
    assert order.order.price == "10000" and order.order.error_code == ""
    assert balances.mode == "paper" and balances.reset is False
    assert {b.currency for b in balances.balances or []} == {"KRW", "BTC"}


def test_paper_reset_pushes_a_balances_struct(
    user: Any, sim: Any, listen: str, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.paper_account_reset(user=user)
    (event,) = received(listen)
    assert event == messages.BalancesEvent(mode="paper", reset=True)


def test_scheduled_order_pushes_its_struct(
    user: Any, sim: Any, listen: str, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        so = services.scheduled_order_create(
            user=user,
            market="KRW-BTC",
            side="bid",
            ord_type="price",
            price=d(10_000),
            trigger_type="time",
            trigger_at=timezone.now() + dt.timedelta(hours=1),
        )
    (event,) = received(listen)
    assert isinstance(event, messages.ScheduledOrderEvent)
    assert event.scheduled_order == messages.ScheduledOrderData(
        id=so.pk,
        mode="paper",
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        state=so.state,
        failure_reason="",
        order_id=None,
    )


def test_mode_and_halt_push_their_structs(
    user: Any, listen: str, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.trading_mode_set(user=user, mode="paper")
        auto_trading_halt(user=user, reason="daily loss limit")
    assert received(listen) == [
        messages.ModeEvent(mode="paper"),
        messages.AutoTradingHaltedEvent(reason="daily loss limit"),
    ]


def test_publish_takes_only_a_user_event(user: Any) -> None:
    with pytest.raises(TypeError):
        user_event_publish(user_id=user.pk, event={"kind": "order", "order": {}})  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # the old untyped form is gone
        user_event_publish(user_id=user.pk, kind="mode", data={"mode": "paper"})  # type: ignore[call-arg]
