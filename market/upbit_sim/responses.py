"""The simulator's HTTP answers: Upbit's JSON envelopes, its two error styles and the ``to`` time parser."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from aiohttp import web

from market.upbit.protocol import UpbitError, error_body

MISSING_PARAM = "Missing request parameter error. Check the required parameters!"
INVALID_PARAM = "Invalid parameter. Check the given value!"

# Exchange API paths (JWT, snake_case error names, §4.1); other unknown /v1/ paths answer as quotation.
EXCHANGE_PREFIXES = (
    "/v1/order/", "/v1/orders", "/v1/accounts", "/v1/deposit", "/v1/withdraw", "/v1/api_keys", "/v1/status/",
)  # fmt: skip


def is_exchange_path(path: str) -> bool:
    return path == "/v1/order" or path.startswith(EXCHANGE_PREFIXES)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def quote_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The quotation API's envelope: the HTTP status as the integer error name."""
    return json_response(error_body(status, message), status, headers)


def exchange_error(err: UpbitError, headers: dict[str, str] | None = None) -> web.Response:
    """The exchange API's envelope: a snake_case error name."""
    return json_response(err.body(), err.status, headers)


def parse_time(value: str) -> int | None:
    """Upbit ``to`` values: ISO-8601 with/without zone, space separator, or epoch ms. Naive = UTC."""
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return int(v)
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


class Reject(Exception):
    """A request refused before its handler ran (auth, rate limit, malformed body): carries the answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("rejected")
        self.response = response
