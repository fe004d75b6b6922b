"""Typed messages between apps: a lower app publishes a :class:`Message`; settings declare who receives it.

A message type is a msgspec Struct defined once, in the lowest app that owns it (``market.messages``,
``mlmodel.messages``, ``trading.messages``), with its ``topic``. :func:`message_publish` sends it to every
Celery task that ``settings.MESSAGE_SUBSCRIBERS[topic]`` declares, so the publisher never names a higher
app's task::

    MESSAGE_SUBSCRIBERS = {
        "mlmodel.prediction": [
            {"task": "autotrade.tasks.autotrade_on_prediction", "queue": "default", "arg": "prediction"},
        ],
    }

The task receives the message as plain JSON (``msgspec.to_builtins``) in its keyword argument ``arg`` and
turns it back into the Struct with :func:`message_decode`. The catalogue is in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import msgspec
from django.conf import settings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="Message")


class Message(msgspec.Struct, kw_only=True):
    """Base of every message between apps: ``topic`` names it in ``settings.MESSAGE_SUBSCRIBERS``."""

    topic: ClassVar[str] = ""


class MessageFormatError(ValueError):
    """A received message that does not match its type (the subscriber logs it and drops it)."""


class Subscriber(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ``settings.MESSAGE_SUBSCRIBERS`` entry: a Celery task by name, its queue and keyword argument."""

    task: str
    queue: str = "default"
    arg: str = "message"


Sender = Callable[[str, dict[str, Any], str], None]


def message_subscribers(*, topic: str, declared: Mapping[str, Any] | None = None) -> list[Subscriber]:
    """The subscribers the settings declare for ``topic`` (a malformed entry raises at once, not silently)."""
    if declared is None:
        declared = settings.MESSAGE_SUBSCRIBERS
    return msgspec.convert(list(declared.get(topic, ())), list[Subscriber])


def _celery_send(task: str, kwargs: dict[str, Any], queue: str) -> None:
    from celery_app import app  # the project Celery app (autodiscovers every app): on the first send

    app.send_task(task, kwargs=kwargs, queue=queue)


def message_publish(*, message: Message, send: Sender | None = None) -> int:
    """Send ``message`` to every subscriber of its topic; returns how many were sent to.

    Best effort per subscriber: one unreachable queue is logged and does not stop the others."""
    subscribers = message_subscribers(topic=message.topic)
    if not subscribers:
        return 0
    payload = msgspec.to_builtins(message)
    send = send or _celery_send
    sent = 0
    for sub in subscribers:
        try:
            send(sub.task, {sub.arg: payload}, sub.queue)
            sent += 1
        except Exception:  # noqa: BLE001 - the broker down must not stop the publisher (collector, ml worker)
            logger.exception("message %s not delivered to %s", message.topic, sub.task)
    return sent


def message_decode(data: Any, *, type: type[M]) -> M:  # noqa: A002 - msgspec's own name for it
    """The Struct from a received payload (JSON builtins); :class:`MessageFormatError` if it does not fit."""
    if isinstance(data, type):
        return data
    try:
        return msgspec.convert(data, type=type, strict=False)
    except msgspec.ValidationError as exc:
        raise MessageFormatError(f"malformed {type.topic or type.__name__} message: {exc}") from exc


# -- the WebSocket envelope (both /ws/market/ and /ws/user/) ------------------------------------------------


class Frame(msgspec.Struct, omit_defaults=True):
    """Every frame on both sockets, both ways: ``{"type": ..., "data": {...}}``.

    Server -> browser: the event kind in ``type`` and its documented fields in ``data`` (the market socket
    adds ``market``); ``{"type": "error", "data": {"code", "message"}}`` for a refused frame.
    Browser -> server: ``{"type": "ping"}`` (answered ``{"type": "pong"}``) and, on the market socket,
    ``{"type": "subscribe", "data": {"market": CODE}}``."""

    type: str
    data: Any = None
    market: str | None = None


def frame(type: str, data: Any = None, *, market: str | None = None) -> dict[str, Any]:  # noqa: A002
    """The envelope as a dict (for ``send_json``); Structs in ``data`` become their JSON builtins."""
    out: dict[str, Any] = {"type": type}
    if market is not None:
        out["market"] = market
    if data is not None:
        out["data"] = msgspec.to_builtins(data) if isinstance(data, msgspec.Struct) else data
    return out


def error_frame(code: str, message: str) -> dict[str, Any]:
    return frame("error", {"code": code, "message": message})


def client_frame(content: Any) -> tuple[str, dict[str, Any]]:
    """``(type, data)`` of a browser frame; ``("", {})`` when it is not an envelope.

    Until the next release the old forms are read too: ``{"action": "ping"}`` and
    ``{"action": "subscribe", "market": CODE}`` (pages loaded before the upgrade keep working)."""
    if not isinstance(content, dict):
        return "", {}
    kind = content.get("type")
    if isinstance(kind, str):
        data = content.get("data")
        return kind, data if isinstance(data, dict) else {}
    action = content.get("action")
    if isinstance(action, str):  # the old market socket form (remove after one release)
        return action, {k: v for k, v in content.items() if k != "action"}
    return "", {}
