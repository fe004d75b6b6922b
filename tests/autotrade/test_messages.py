"""The user events a session pushes are exactly their documented Structs (autotrade and trading messages)."""

from __future__ import annotations

from typing import Any

import msgspec
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from autotrade import messages as auto_messages
from autotrade import services
from autotrade.tasks import autotrade_on_prediction
from tests.autotrade.conftest import prediction
from tests.autotrade.test_sessions import drain, start
from tests.trading.test_user_events import received
from trading import messages as trading_messages
from trading.messages import user_event_frame

EVENTS = {**trading_messages.USER_EVENTS, **auto_messages.USER_EVENTS}


def _fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_every_pushed_user_event_is_its_documented_struct(
    user: Any, wide_book: Any, active_models: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # listen here
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{user.pk}", channel)
    with django_capture_on_commit_callbacks(execute=True):
        start(user)
        autotrade_on_prediction.run(prediction=prediction(0.0030))  # a buy: decision, order, balances
    frames = [user_event_frame(e["data"]) for e in drain(channel)]
    kinds = [f["type"] for f in frames]
    assert {"auto_session", "auto_decision", "order", "balances"} <= set(kinds), kinds
    for frame in frames:
        struct = EVENTS[frame["type"]]
        typed = msgspec.convert(frame["data"], struct)
        # No field beyond the documented ones, none missing (omit_defaults fields may be left out).
        assert set(frame["data"]) <= _fields(struct), frame
        assert msgspec.to_builtins(typed) == {k: v for k, v in frame["data"].items() if k in _fields(struct)}
    decision = next(f for f in frames if f["type"] == "auto_decision")["data"]["decision"]
    assert set(decision) == _fields(auto_messages.DecisionData)


def test_session_start_and_stop_push_auto_session_structs(
    user: Any, wide_book: Any, active_models: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """Issue 15: the auto-trading publisher builds its Struct; the pushed event decodes strictly into it."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{user.pk}", channel)
    with django_capture_on_commit_callbacks(execute=True):
        session = start(user)
        services.autotrade_stop(user=user, session_id=session.pk, reason="enough")
    started, stopped = received(channel, EVENTS)
    assert all(isinstance(e, auto_messages.AutoSessionEvent) for e in (started, stopped))
    assert started.session.id == stopped.session.id == session.pk
    assert (started.session.state, stopped.session.state, stopped.session.stop_reason) == (
        "running",
        "stopped",
        "enough",
    )
    assert started.session.position is None  # the position is only in REST answers
