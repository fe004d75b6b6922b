"""Typed Upbit errors: the one table from Upbit's error ``name`` to a class (``_BY_NAME``/``_class_for``).

The client turns every error response into one of these (:func:`error_from_response`); the simulator's
engine, the paper exchange and the order pre-check build theirs from a bare name with :func:`upbit_error`,
so one name gives one class on every path (``trading.errors.from_upbit`` maps the classes).
``UpbitError``/``UpbitAuthError`` are the classes of :mod:`market.upbit.protocol`, so ``except UpbitError``
catches errors from either side. Messages never carry request secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from market.upbit.protocol import (
    AUTH_ERROR_NAMES,
    ERRORS,
    TOO_MANY_REQUESTS_TEXT,
    UpbitAuthError,
    UpbitError,
)

__all__ = [
    "InsufficientFunds",
    "InvalidParameter",
    "InvalidPriceUnit",
    "InvalidVolume",
    "MarketNotFound",
    "MarketOffline",
    "OrderNotFound",
    "OverMaxTotal",
    "RateLimited",
    "UnderMinTotal",
    "UpbitAuthError",
    "UpbitError",
    "UpbitUnavailable",
    "as_typed",
    "error_from_response",
    "upbit_error",
]


class InsufficientFunds(UpbitError):
    """``insufficient_funds_bid`` / ``insufficient_funds_ask``."""


class UnderMinTotal(UpbitError):
    """``under_min_total_bid`` / ``under_min_total_ask``: the total is below the market's minimum."""


class OverMaxTotal(UpbitError):
    """``over_krw_funds_bid``: a buy's total is above Upbit's maximum (1,000,000,000 KRW, §7.3)."""


class InvalidPriceUnit(UpbitError):
    """``invalid_price_bid`` / ``invalid_price_ask``: the price is off the tick grid."""


class InvalidParameter(UpbitError):
    """``invalid_parameter``, ``validation_error``, ``create_*_error``, ``invalid_time_in_force``, 400s."""


class InvalidVolume(InvalidParameter):
    """``invalid_volume_bid`` / ``invalid_volume_ask``: the volume is off the 8-decimal grid."""


class MarketNotFound(UpbitError):
    """``notfoundmarket`` on the exchange API, or quotation ``404 Code not found``."""


class MarketOffline(UpbitError):
    """``market_offline`` (403): the market exists but is under maintenance, so it cannot be traded now.

    A definite refusal, not an outage: the order was not taken, and it is not retried (unlike
    :class:`UpbitUnavailable`, whose request may have been processed)."""


class OrderNotFound(UpbitError):
    """``order_not_found``."""


class RateLimited(UpbitError):
    """HTTP 429 (``Too many API requests.``) or 418 (temporary block)."""

    def __init__(
        self,
        name: str | int,
        message: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(name, message, status)
        self.retry_after = retry_after


class UpbitUnavailable(UpbitError):
    """Network failure, timeout, or a 5xx answer: the request may or may not have been processed."""


_BY_NAME: dict[str, type[UpbitError]] = {
    "insufficient_funds_bid": InsufficientFunds,
    "insufficient_funds_ask": InsufficientFunds,
    "under_min_total_bid": UnderMinTotal,
    "under_min_total_ask": UnderMinTotal,
    "over_krw_funds_bid": OverMaxTotal,
    "invalid_price_bid": InvalidPriceUnit,
    "invalid_price_ask": InvalidPriceUnit,
    "invalid_parameter": InvalidParameter,
    "validation_error": InvalidParameter,
    "create_bid_error": InvalidParameter,
    "create_ask_error": InvalidParameter,
    "invalid_time_in_force": InvalidParameter,
    "invalid_volume_bid": InvalidVolume,
    "invalid_volume_ask": InvalidVolume,
    "duplicate_identifier": InvalidParameter,
    "order_not_cancelable": InvalidParameter,
    "notfoundmarket": MarketNotFound,
    "order_not_found": OrderNotFound,
    "too_many_requests": RateLimited,
    "market_offline": MarketOffline,
}


def _class_for(name: str | int, status: int) -> type[UpbitError]:
    if isinstance(name, str):
        if name in AUTH_ERROR_NAMES:
            return UpbitAuthError
        if name in _BY_NAME:
            return _BY_NAME[name]
    if status in (429, 418):
        return RateLimited
    if status >= 500:
        return UpbitUnavailable
    if isinstance(name, int):
        # Quotation errors carry the integer status as their name (§4.1).
        if name == 404:
            return MarketNotFound
        if name == 400:
            return InvalidParameter
    if status in (401, 403) and isinstance(name, str) and not name:
        return UpbitAuthError
    return UpbitError


def upbit_error(name: str | int, message: str | None = None, status: int | None = None) -> UpbitError:
    """The typed error for a bare Upbit name (a rule name from :mod:`market.upbit.rules`, the simulator's
    refusals): the class the client gives the same answer. ``status`` defaults to Upbit's for the name."""
    if status is None:
        known = ERRORS.get(name) if isinstance(name, str) else None
        status = known[0] if known else (429 if name == "too_many_requests" else 400)
    return _class_for(name, status)(name, message, status)


def as_typed(exc: UpbitError) -> UpbitError:
    """``exc`` itself when already typed; a bare ``UpbitError(name)`` rebuilt through the same table."""
    if type(exc) is not UpbitError:
        return exc
    return upbit_error(exc.name, exc.message, exc.status)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(
    status: int, body: bytes | str | None, headers: Mapping[str, str] | None = None
) -> UpbitError:
    """Map an HTTP error answer to a typed error. Tolerates non-JSON bodies (the 429 text) and integer names.

    The message is Upbit's own error message (never the request), truncated so an HTML error page from a
    proxy cannot flood a log line.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    data: Any = None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(err, Mapping) and "name" in err:
        raw = err.get("name")
        name: str | int = raw if isinstance(raw, (str, int)) and not isinstance(raw, bool) else str(raw)
        message = str(err.get("message") or "")[:300]
    else:
        if status == 429:
            name, message = "too_many_requests", (text.strip() or TOO_MANY_REQUESTS_TEXT)[:300]
        elif status == 418:
            name, message = "ip_blocked", (text.strip() or "Temporarily blocked")[:300]
        else:
            name, message = status, (text.strip()[:300] or f"HTTP {status}")
    cls = _class_for(name, status)
    if cls is RateLimited:
        return RateLimited(name, message, status, retry_after=_retry_after(headers))
    return cls(name, message, status)
