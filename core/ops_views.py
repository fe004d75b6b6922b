"""Operator endpoints: ``/metrics`` (Prometheus) and ``/readyz`` (web readiness). ``/healthz`` (core.views)
is the web's liveness; the other roles' liveness is ``manage.py health --role X`` (core/metrics.py)."""

from __future__ import annotations

import hmac

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core import metrics

_LOOPBACK = {"127.0.0.1", "::1"}


def _scrape_allowed(request: HttpRequest) -> bool:
    """Loopback peers always; others only with ``Authorization: Bearer <METRICS_TOKEN>`` when it is set."""
    token = str(settings.METRICS_TOKEN or "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    return request.META.get("REMOTE_ADDR") in _LOOPBACK


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _scrape_allowed(request):
        return HttpResponse("loopback or METRICS_TOKEN only\n", status=403, content_type="text/plain")
    body, content_type = metrics.metrics_render()
    return HttpResponse(body, content_type=content_type)


def _check_db() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set("readyz", "1", 10)
    if cache.get("readyz") != "1":
        raise RuntimeError("cache did not return what was stored")


def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer")
    async_to_sync(layer.group_send)("readyz", {"type": "readyz.ping"})


@require_GET
def readiness(request: HttpRequest) -> JsonResponse:
    """200 when the database, the cache and the channel layer answer; 503 naming those that did not."""
    checks = {"database": _check_db, "cache": _check_cache, "channel_layer": _check_channel_layer}
    failed: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type is enough
            failed[name] = type(exc).__name__
    metrics.heartbeat("web")
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok", "checks": sorted(checks)})
