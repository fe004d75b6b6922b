"""Operational endpoints: health check and the embedded-mode realtime relay."""

from __future__ import annotations

import hmac
import json

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.realtime import RELAY_HEADER, relay_token

_LOOPBACK = {"127.0.0.1", "::1"}


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_POST
async def realtime_relay(request: HttpRequest) -> HttpResponse:
    token = request.headers.get(RELAY_HEADER, "")
    if request.META.get("REMOTE_ADDR") not in _LOOPBACK or not hmac.compare_digest(token, relay_token()):
        return HttpResponse(status=403)
    try:
        items = json.loads(request.body)
        layer = get_channel_layer()
        for item in items:
            await layer.group_send(str(item["group"]), dict(item["message"]))
    except (ValueError, KeyError, TypeError, RecursionError):
        return HttpResponse(status=400)
    return HttpResponse(status=204)
