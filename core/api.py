"""The DRF exception handler: application errors and Django validation errors become clear 4xx JSON."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions as drf_exceptions
from rest_framework import parsers, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError
from core.numbers import DECIMAL_MESSAGES, decimal_text_refusal

logger = logging.getLogger(__name__)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; nesting too deep for the decoder (``RecursionError``) is a 400 like bad JSON."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise drf_exceptions.ParseError("JSON parse error - nested too deeply") from None


# A decimal written as text follows core.numbers; a JSON number is a number already and passes as it is.


class StrictDecimalField(serializers.DecimalField):
    """A DecimalField that reads only ASCII digits: Python's ``Decimal`` would take full-width or
    Arabic-Indic digits, a '+' or an exponent, which no form of ours writes and a user could not check.
    ``signed=False`` (amounts) refuses a '-' too, with a message that says so."""

    default_error_messages = DECIMAL_MESSAGES

    def __init__(self, *, signed: bool = True, **kwargs: Any) -> None:
        self.signed = signed
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            text = data.strip()
            refusal = decimal_text_refusal(text, signed=self.signed)
            if refusal is not None:
                self.fail(refusal)
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must name its time zone ('Z' or '+09:00'): a bare '2026-12-04T10:00' is
    refused rather than silently read in the server's zone."""

    default_error_messages = {
        "naive": _("Give the time zone too, e.g. 2026-12-04T10:00:00+09:00 or ...Z."),
    }

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text.isascii():
                self.fail("invalid", format="ISO 8601")
            try:
                parsed = parse_datetime(text)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


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
