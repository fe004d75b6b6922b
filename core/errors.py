"""One exception hierarchy for the application; mapped to HTTP once (core.api) and translated once."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A failure the user can act on. ``message`` is a lazily-translated, user-facing sentence."""

    status_code = 400
    code = "error"

    def __init__(self, message: Any, *, code: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        if code:
            self.code = code
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    status_code = 400
    code = "invalid"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class PermissionDenied(ApplicationError):
    status_code = 403
    code = "forbidden"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class ServiceUnavailable(ApplicationError):
    """An outside service (exchange, storage) failed or limited us; the request may be retried."""

    status_code = 503
    code = "unavailable"
