"""The simulator's API keys and Upbit's JWT check (§2.4) for REST requests and the private WebSocket."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from market.upbit.errors import upbit_error
from market.upbit.protocol import NonceCache, UpbitAuthError, UpbitError, param_pairs, verify_jwt

from .ratelimit import RateGate
from .responses import Reject, exchange_error


@dataclass
class ApiKey:
    access_key: str
    secret_key: str
    account_id: str
    expired: bool = False


class KeyStore:
    """Access key -> secret and account; the nonce cache that refuses a replayed token."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.nonces = NonceCache()

    def add(
        self, *, account_id: str, access_key: str | None, secret_key: str | None, expired: bool
    ) -> ApiKey:
        access = access_key or secrets.token_urlsafe(30)
        secret = secret_key or secrets.token_urlsafe(30)
        if access in self.keys:
            raise ValueError("access key already exists")
        key = self.keys[access] = ApiKey(access, secret, account_id, expired)
        return key

    def secret_for(self, access_key: str) -> str | None:
        k = self.keys.get(access_key)
        if k is None:
            return None
        if k.expired:
            raise UpbitAuthError("expired_access_key")
        return k.secret_key

    def verify(self, authorization: str | None, params: list[tuple[str, Any]] | None = None) -> ApiKey:
        """The key a valid ``Authorization`` header belongs to; raises ``UpbitAuthError`` otherwise."""
        claims = verify_jwt(
            authorization, secret_for=self.secret_for, params=params, nonce_check=self.nonces.check
        )
        return self.keys[claims["access_key"]]


async def request_params(request: web.Request) -> list[tuple[str, Any]]:
    """Request parameters in received order: the query string, else the body (JSON object or form)."""
    pairs: list[tuple[str, Any]] = list(request.query.items())
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            text = raw.decode("utf-8")
            if text.lstrip().startswith("{"):
                body = json.loads(text)
                if not isinstance(body, dict):
                    raise upbit_error("validation_error", "body must be a JSON object")
                pairs.extend(param_pairs(body))  # as the client renders and hashes it
            elif text.lstrip().startswith("["):
                raise upbit_error("validation_error", "body must be a JSON object")
            elif not pairs:
                pairs = parse_qsl(text, keep_blank_values=True)
    return pairs


async def authenticate(
    request: web.Request, group: str, *, keys: KeyStore, gate: RateGate
) -> tuple[ApiKey, list[tuple[str, Any]], dict[str, str]]:
    """Verify the JWT (§2.4) and the rate limit; raise ``Reject`` with the response."""
    try:
        params = await request_params(request)
    except (ValueError, UnicodeDecodeError) as exc:
        ok, hdr = gate.limit(request, group)
        raise Reject(exchange_error(upbit_error("validation_error", "malformed request body"), hdr)) from exc
    except UpbitError as exc:
        ok, hdr = gate.limit(request, group)
        raise Reject(exchange_error(exc, hdr)) from exc
    try:
        key = keys.verify(request.headers.get("Authorization"), params)
    except UpbitAuthError as exc:
        ok, hdr = gate.limit(request, group)
        raise Reject(exchange_error(exc, hdr)) from exc
    ok, hdr = gate.limit(request, group, "key:" + key.account_id)
    if not ok:
        raise Reject(gate.too_many(hdr))
    return key, params, hdr
