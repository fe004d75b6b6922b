"""Operational endpoints: health check and the embedded-mode realtime relay."""

from __future__ import annotations

import hmac
import json

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
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


# -- error pages: JSON under /api/ (the schema documents an ApiError body), Django's pages elsewhere ---


def _api_error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse | None:
    if not request.path.startswith("/api/"):
        return None
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _api_error(request, 400, "bad_request", "Bad request.") or defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _api_error(request, 403, "forbidden", "Not allowed.") or defaults.permission_denied(
        request, exception
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _api_error(request, 404, "not_found", "No such API endpoint.") or defaults.page_not_found(
        request, exception
    )


@csrf_exempt  # nothing to protect, and a CSRF refusal would be Django's HTML 403 instead of this JSON 404
def api_not_found(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"error": {"code": "not_found", "message": "No such API endpoint."}}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _api_error(request, 500, "server_error", "Server error.") or defaults.server_error(request)
