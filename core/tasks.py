"""Tasks every worker serves: a ping the launcher sends to each queue to know that its worker is up."""

from __future__ import annotations

from celery import shared_task

PING = "core.ping"


@shared_task(name=PING)
def ping() -> str:
    return "pong"
