"""The DRF exception handler: application errors and Django validation errors become clear 4xx JSON."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework import parsers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError

logger = logging.getLogger(__name__)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; nesting too deep for the decoder (``RecursionError``) is a 400 like bad JSON."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise drf_exceptions.ParseError("JSON parse error - nested too deeply") from None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = drf_exceptions.ValidationError(detail=detail)
    if isinstance(exc, ApplicationError):
        body = {"error": {"code": exc.code, "message": str(exc.message), **exc.extra}}
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, drf_exceptions.APIException):
        detail = response.data
        message = detail.get("detail") if isinstance(detail, dict) and "detail" in detail else detail
        response.data = {
            "error": {
                "code": getattr(exc, "default_code", "error"),
                "message": str(message) if not isinstance(message, (dict, list)) else "Invalid input.",
                "fields": detail if isinstance(detail, (dict, list)) and "detail" not in detail else {},
            }
        }
    return response
