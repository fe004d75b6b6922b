"""Typed trading errors (on core.errors) with translated user messages, and the mapping from Upbit's typed
errors (``market.upbit.errors``) to them. Every exchange implementation raises only these."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _

from core.errors import (
    ApplicationError,
    Conflict,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationFailed,
)
from market.upbit import errors as upbit


class InvalidOrder(ValidationFailed):
    code = "invalid_order"


class InsufficientFunds(ValidationFailed):
    code = "insufficient_funds"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("Not enough available balance for this order."), **kw)


class UnderMinTotal(ValidationFailed):
    code = "under_min_total"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The order total must be at least 5,000 KRW."), **kw)


class InvalidPriceUnit(ValidationFailed):
    code = "invalid_price_unit"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The price is not on the market's price unit (tick size)."), **kw)


class InvalidVolume(ValidationFailed):
    code = "invalid_volume"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The volume is not valid (positive, at most 8 decimal places)."), **kw)


class MarketNotFound(ValidationFailed):
    code = "market_not_found"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("This market does not exist on the exchange."), **kw)


class RiskLimitExceeded(ValidationFailed):
    code = "risk_limit"


class KeysMissing(ValidationFailed):
    code = "keys_missing"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(
            message or _("Store your Upbit API keys on your profile page before trading live."), **kw
        )


class ExchangeAuthFailed(PermissionDenied):
    code = "exchange_auth"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(
            message
            or _("Upbit refused your API keys (wrong, expired, or missing permission or IP allowlist)."),
            **kw,
        )


class ExchangeRejected(ValidationFailed):
    code = "exchange_rejected"


class TradingHalted(Conflict):
    code = "trading_halted"


class OrderNotCancelable(Conflict):
    code = "not_cancelable"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("This order is no longer open and cannot be cancelled."), **kw)


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("This idempotency key was already used for a different request."), **kw)


class ExchangeRateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The exchange is limiting our requests. Try again in a moment."), **kw)


class ExchangeUnavailable(ServiceUnavailable):
    code = "exchange_unavailable"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The exchange cannot be reached right now. Try again shortly."), **kw)


class MarketOffline(ExchangeUnavailable):
    """Upbit's ``market_offline``: the market exists but is under maintenance. A definite refusal (nothing was
    placed), temporary like an outage, so callers that wait out an unavailable exchange wait this out too."""

    code = "market_offline"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(
            message
            or _(
                "This market is under maintenance on the exchange and cannot be traded now. Try again later."
            ),
            **kw,
        )


class OrderUnconfirmed(ExchangeUnavailable):
    """A retry of an order whose first attempt got no answer, while the exchange cannot yet say whether it
    took it (trading.services.orders): not placed so far, and a new key could place it twice."""

    code = "order_unconfirmed"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(
            message
            or _(
                "The order is not confirmed: the first attempt with this idempotency key got no answer from "
                "the exchange, and the exchange does not show the order so far. Send it again with the same "
                "key in a minute or two to learn the outcome; a new key could place it twice."
            ),
            **kw,
        )


class ExchangeOrderNotFound(NotFound):
    code = "exchange_order_not_found"

    def __init__(self, message: Any = None, **kw: Any) -> None:
        super().__init__(message or _("The exchange does not know this order."), **kw)


# Stored error codes -> class, so a retried request with a rejected order's key gets the same error again.
ERROR_CLASSES: dict[str, type[ApplicationError]] = {
    cls.code: cls
    for cls in (
        InvalidOrder, InsufficientFunds, UnderMinTotal, InvalidPriceUnit, InvalidVolume, MarketNotFound,
        RiskLimitExceeded, KeysMissing, ExchangeAuthFailed, ExchangeRejected, TradingHalted,
        ExchangeRateLimited, ExchangeUnavailable,
    )
}  # fmt: skip


def _over_max_total() -> ApplicationError:
    # The figure is Upbit's (protocol.MAX_ORDER_TOTAL_KRW), written out so the catalogue keeps one msgid.
    return InvalidOrder(_("The order total is above the exchange's maximum of 1,000,000,000 KRW."))


# Upbit's error class -> the application's error (a class, or a factory for one with a particular message).
# The most specific class wins (``from_upbit`` walks the MRO): InvalidVolume before InvalidParameter.
_FROM_UPBIT: dict[type[Exception], Callable[[], ApplicationError]] = {
    upbit.UpbitAuthError: ExchangeAuthFailed,
    upbit.RateLimited: ExchangeRateLimited,
    upbit.UpbitUnavailable: ExchangeUnavailable,
    upbit.MarketOffline: MarketOffline,
    upbit.InsufficientFunds: InsufficientFunds,
    upbit.UnderMinTotal: UnderMinTotal,
    upbit.OverMaxTotal: _over_max_total,
    upbit.InvalidPriceUnit: InvalidPriceUnit,
    upbit.InvalidVolume: InvalidVolume,
    upbit.MarketNotFound: MarketNotFound,
    upbit.OrderNotFound: ExchangeOrderNotFound,
}


def from_upbit(exc: Exception) -> ApplicationError:
    """Map an Upbit error to the application's typed error, by its class in ``market.upbit.errors`` (the one
    table from Upbit's names; a bare ``UpbitError(name)`` is typed through it first). Any other Upbit error,
    ``InvalidParameter`` included, is ``ExchangeRejected`` naming Upbit's reason."""
    if isinstance(exc, upbit.UpbitError):
        exc = upbit.as_typed(exc)
    for klass in type(exc).__mro__:
        make = _FROM_UPBIT.get(klass)
        if make is not None:
            return make()
    name = getattr(exc, "name", None)
    reason = name if name not in (None, "") else getattr(exc, "status", None)
    return ExchangeRejected(_("The exchange rejected the order: %(reason)s") % {"reason": reason})
