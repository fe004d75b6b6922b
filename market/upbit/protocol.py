"""Upbit wire protocol pieces shared by the real client and the simulator (pure: no Django, no I/O).

Contents (facts from ``shared/upbit-api.md``; section numbers refer to it):

* market rules: KRW tick table (§7.1), minimum/maximum order total (§7.3), fee (§7.4);
* authentication: JWT building and verification with the SHA-512 query hash (§2);
* error names/bodies (§4) as :class:`UpbitError`;
* the ``Remaining-Req`` header (§3.2) and the default per-group rate limits (§3.1);
* WebSocket DEFAULT <-> SIMPLE key maps (§10.3, §11) and the ``CODE.N`` depth suffix (§10.2);
* small formatting helpers for exchange decimal strings and Upbit's time strings.

The API of this module is relied on by ``market/upbit/client.py`` and ``market/upbit_sim``; keep it stable.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal
from urllib.parse import urlencode

# ------------------------------------------------------------------------------------------------------------
# Market rules
# ------------------------------------------------------------------------------------------------------------

FEE_RATE = Decimal("0.0005")  # KRW market, both sides, charged in KRW (§7.4)
MIN_ORDER_TOTAL_KRW = Decimal(5000)  # §7.3
MAX_ORDER_TOTAL_KRW = Decimal(1000000000)  # §7.3 (over_krw_funds_bid)
VOLUME_DECIMALS = 8
VOLUME_QUANTUM = Decimal("0.00000001")
ORDERBOOK_LEVELS = 30
ORDERBOOK_DEPTHS = (1, 5, 15, 30)  # allowed ``.N`` suffixes on WebSocket codes (§10.2)
# The one market-code rule of the app: KRW markets only (the only ones traded, collected or modelled).
KRW_MARKET_RE = re.compile(r"KRW-[A-Z0-9]{1,15}")
# Any QUOTE-BASE code (e.g. USDT-BTC, BTC-ETH.X): the day files of imported data may name another
# exchange's market; everything that trades or serves pages takes KRW markets only (``is_krw_market``).
MARKET_CODE_RE = re.compile(r"[A-Z0-9]+-[A-Z0-9.]+")


def is_krw_market(code: str) -> bool:
    """``code`` (already upper-cased) names a KRW market, e.g. ``KRW-BTC``."""
    return KRW_MARKET_RE.fullmatch(code) is not None


_D = Decimal
# (lower bound inclusive, tick) in descending order; current table, effective 2025-07-31 (§7.1).
KRW_TICK_TABLE: tuple[tuple[Decimal, Decimal], ...] = (
    (_D("2000000"), _D("1000")),
    (_D("1000000"), _D("1000")),
    (_D("500000"), _D("500")),
    (_D("100000"), _D("100")),
    (_D("50000"), _D("50")),
    (_D("10000"), _D("10")),
    (_D("5000"), _D("5")),
    (_D("1000"), _D("1")),
    (_D("100"), _D("1")),
    (_D("10"), _D("0.1")),
    (_D("1"), _D("0.01")),
    (_D("0.1"), _D("0.001")),
    (_D("0.01"), _D("0.0001")),
    (_D("0.001"), _D("0.00001")),
    (_D("0.0001"), _D("0.000001")),
    (_D("0.00001"), _D("0.0000001")),
    (_D("0"), _D("0.00000001")),
)
# Table in force 2024-01-29 .. 2025-07-30 (for replaying data of that period).
KRW_TICK_TABLE_2024: tuple[tuple[Decimal, Decimal], ...] = (
    (_D("2000000"), _D("1000")),
    (_D("1000000"), _D("500")),
    (_D("500000"), _D("100")),
    (_D("100000"), _D("50")),
    (_D("10000"), _D("10")),
    (_D("1000"), _D("1")),
    (_D("100"), _D("0.1")),
    (_D("10"), _D("0.01")),
    (_D("1"), _D("0.001")),
    (_D("0.1"), _D("0.0001")),
    (_D("0.01"), _D("0.00001")),
    (_D("0.001"), _D("0.000001")),
    (_D("0.0001"), _D("0.0000001")),
    (_D("0"), _D("0.00000001")),
)
# Table before 2024-01-29 (the 2018 ADA sample uses this one: 1 KRW between 100 and 1000).
KRW_TICK_TABLE_PRE2024: tuple[tuple[Decimal, Decimal], ...] = (
    (_D("2000000"), _D("1000")),
    (_D("1000000"), _D("500")),
    (_D("500000"), _D("100")),
    (_D("100000"), _D("50")),
    (_D("10000"), _D("10")),
    (_D("1000"), _D("5")),
    (_D("100"), _D("1")),
    (_D("10"), _D("0.1")),
    (_D("1"), _D("0.01")),
    (_D("0.1"), _D("0.001")),
    (_D("0"), _D("0.0001")),
)

TickTable = tuple[tuple[Decimal, Decimal], ...]
RoundDirection = Literal["down", "up", "nearest"]


def krw_tick_size(price: Decimal, table: TickTable = KRW_TICK_TABLE) -> Decimal:
    """The KRW price unit for ``price`` (the band is chosen by the price itself)."""
    price = Decimal(price)
    for lower, tick in table:
        if price >= lower:
            return tick
    return table[-1][1]


def is_on_tick(price: Decimal, table: TickTable = KRW_TICK_TABLE) -> bool:
    """True when ``price`` is a positive multiple of its band's tick."""
    price = Decimal(price)
    if not price.is_finite() or price <= 0:
        return False
    return price % krw_tick_size(price, table) == 0


def round_to_tick(
    price: Decimal, direction: RoundDirection = "down", table: TickTable = KRW_TICK_TABLE
) -> Decimal:
    """Round ``price`` onto the tick grid: ``down`` (floor), ``up`` (ceil) or ``nearest`` (half up)."""
    price = Decimal(price)
    tick = krw_tick_size(price, table)
    rounding = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_UP}[direction]
    out = (price / tick).quantize(Decimal(1), rounding=rounding) * tick
    # Rounding down at a band edge may land in the band below, where the grid is finer: still on-grid.
    if out <= 0:
        out = tick
    return out.quantize(tick) if tick < 1 else out.quantize(Decimal(1))


_FLOAT_TICKS = [(float(lo), float(t)) for lo, t in KRW_TICK_TABLE]


def krw_tick_size_float(price: float) -> float:
    """Float twin of :func:`krw_tick_size` for the numeric (numpy) paths."""
    for lower, tick in _FLOAT_TICKS:
        if price >= lower:
            return tick
    return _FLOAT_TICKS[-1][1]


def quantize_volume(volume: Decimal) -> Decimal:
    """Volumes carry at most 8 decimals (truncate, never round up what a user owns)."""
    return Decimal(volume).quantize(VOLUME_QUANTUM, rounding=ROUND_FLOOR)


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------

# name -> (HTTP status, message). Messages follow Upbit's Korean texts where known.
ERRORS: dict[str, tuple[int, str]] = {
    "create_bid_error": (400, "주문 요청 정보가 올바르지 않습니다."),
    "create_ask_error": (400, "주문 요청 정보가 올바르지 않습니다."),
    "insufficient_funds_bid": (400, "주문가능한 금액(KRW)이 부족합니다."),
    "insufficient_funds_ask": (400, "주문가능한 금액이 부족합니다."),
    "under_min_total_bid": (400, "최소주문금액 이상으로 주문해주세요"),
    "under_min_total_ask": (400, "최소주문금액 이상으로 주문해주세요"),
    "invalid_price_bid": (400, "주문 가격 단위를 잘못 입력하셨습니다."),
    "invalid_price_ask": (400, "주문 가격 단위를 잘못 입력하셨습니다."),
    "invalid_volume_bid": (400, "주문 수량 단위를 잘못 입력하셨습니다."),
    "invalid_volume_ask": (400, "주문 수량 단위를 잘못 입력하셨습니다."),
    "over_krw_funds_bid": (400, "최대 주문 금액을 초과하였습니다."),
    "invalid_parameter": (400, "잘못된 파라미터입니다."),
    "invalid_time_in_force": (400, "잘못된 time_in_force 입니다."),
    "notfoundmarket": (400, "마켓을 찾지 못했습니다."),
    "validation_error": (400, "잘못된 API 요청입니다."),
    "duplicate_identifier": (400, "이미 사용된 identifier 입니다."),  # name unconfirmed (§4.2)
    "order_not_cancelable": (400, "취소할 수 없는 주문입니다."),  # name unconfirmed (§4.2)
    "invalid_query_payload": (401, "JWT 헤더의 페이로드가 올바르지 않습니다."),
    "jwt_verification": (401, "JWT 토큰 검증에 실패했습니다."),
    "expired_access_key": (401, "API 키가 만료되었습니다."),
    "nonce_used": (401, "이미 요청한 nonce값이 다시 전송되었습니다."),
    "no_authorization_ip": (401, "허용되지 않은 IP 주소입니다."),
    "no_authorization_token": (401, "인증 토큰이 존재하지 않습니다."),
    "invalid_access_key": (401, "잘못된 엑세스 키입니다."),
    "out_of_scope": (403, "허용되지 않은 기능입니다."),
    "market_offline": (403, "마켓이 점검 중입니다."),
    "order_not_found": (404, "주문을 찾지 못했습니다."),
}
TOO_MANY_REQUESTS_TEXT = "Too many API requests."


class UpbitError(Exception):
    """An Upbit error: ``name`` is the wire name (a snake_case string on exchange REST, an int on quotation
    REST, an upper-case string on WebSocket), ``status`` the HTTP status."""

    def __init__(self, name: str | int, message: str | None = None, status: int | None = None) -> None:
        known = ERRORS.get(name) if isinstance(name, str) else None
        self.name = name
        self.status = status if status is not None else (known[0] if known else 400)
        self.message = message if message is not None else (known[1] if known else str(name))
        super().__init__(f"{self.name}: {self.message}")

    def body(self) -> dict[str, Any]:
        return error_body(self.name, self.message)


class UpbitAuthError(UpbitError):
    """Authentication failure (401/403 family): jwt_verification, nonce_used, invalid_query_payload, ..."""


AUTH_ERROR_NAMES = frozenset(
    {
        "invalid_query_payload",
        "jwt_verification",
        "expired_access_key",
        "nonce_used",
        "no_authorization_ip",
        "no_authorization_i_p",
        "no_authorization_token",
        "invalid_access_key",
        "out_of_scope",
        "thirdparty_agreement_required",
    }
)  # the one list: the client's parser (``errors.error_from_response``) and trading's mapping read it


def error_body(name: str | int, message: str | None = None) -> dict[str, Any]:
    """``{"error": {"name": ..., "message": ...}}`` (§4.1)."""
    if message is None:
        known = ERRORS.get(name) if isinstance(name, str) else None
        message = known[1] if known else str(name)
    return {"error": {"name": name, "message": message}}


# ------------------------------------------------------------------------------------------------------------
# Authentication (§2)
# ------------------------------------------------------------------------------------------------------------

Params = Iterable[tuple[str, Any]] | Mapping[str, Any]
JWT_ALGORITHMS = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}


def param_pairs(params: Params | None) -> list[tuple[str, str]]:
    """Request parameters as Upbit reads them and the JWT ``query_hash`` covers them (§2.2), in the order
    given: ``None`` values dropped, a list or tuple repeated under ``key[]``
    (``states[]=done&states[]=cancel``) and each value rendered by :func:`param_value`. The one rendering
    for the client's query strings, JSON bodies and tokens and for the simulator's received parameters and
    its token check."""
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            k = key if key.endswith("[]") else f"{key}[]"
            pairs.extend((k, param_value(v)) for v in value)
        else:
            pairs.append((key, param_value(value)))
    return pairs


def param_value(value: Any) -> str:
    """One parameter value on the wire: ``true``/``false``, a Decimal without exponent or trailing zeros,
    an aware datetime in ISO 8601 to the second (a naive one is taken as UTC), anything else ``str()``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.isoformat(timespec="seconds")
    return str(value)


def query_string_for_hash(params: Params | None) -> str:
    """The unencoded ``k=v&k=v`` string that is hashed (§2.2), in the order given."""
    return "&".join(f"{k}={v}" for k, v in param_pairs(params))


def query_string_encoded(params: Params | None) -> str:
    """The percent-encoded variant (pyupbit hashes this, with ``%5B%5D=`` turned back into ``[]=``)."""
    return urlencode(param_pairs(params)).replace("%5B%5D=", "[]=")


def query_hash(params: Params | None) -> str:
    return hashlib.sha512(query_string_for_hash(params).encode("utf-8")).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _compact(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_jwt(
    access_key: str,
    secret_key: str,
    params: Params | None = None,
    alg: str = "HS256",
    nonce: str | None = None,
) -> str:
    """A fresh token for one request (§2.1). ``params`` are the query parameters (GET/DELETE) or the JSON
    body's top-level fields (POST) in the order they are sent; ``None``/empty means no ``query_hash``."""
    if alg not in JWT_ALGORITHMS:
        raise ValueError(f"unsupported JWT algorithm {alg!r}")
    payload: dict[str, Any] = {"access_key": access_key, "nonce": nonce or str(uuid.uuid4())}
    pairs = param_pairs(params)
    if pairs:
        payload["query_hash"] = query_hash(pairs)
        payload["query_hash_alg"] = "SHA512"
    signing_input = _b64url(_compact({"alg": alg, "typ": "JWT"})) + "." + _b64url(_compact(payload))
    signature = hmac.new(
        secret_key.encode("utf-8"), signing_input.encode("ascii"), JWT_ALGORITHMS[alg]
    ).digest()
    return signing_input + "." + _b64url(signature)


@dataclass(frozen=True)
class JwtParts:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode_jwt_unverified(token: str) -> JwtParts:
    """Split and decode a token without checking it. Raises ``UpbitAuthError('jwt_verification')``."""
    try:
        head_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(_b64url_decode(head_b64))
        claims = json.loads(_b64url_decode(payload_b64))
        signature = _b64url_decode(sig_b64)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise UpbitAuthError("jwt_verification") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise UpbitAuthError("jwt_verification")
    return JwtParts(header, claims, f"{head_b64}.{payload_b64}".encode("ascii"), signature)


def bearer_token(authorization: str | None) -> str:
    """The token out of an ``Authorization`` header value; ``no_authorization_token`` if absent/garbled."""
    if not authorization:
        raise UpbitAuthError("no_authorization_token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UpbitAuthError("no_authorization_token")
    return token.strip()


def verify_jwt(
    authorization: str | None,
    *,
    secret_for: Callable[[str], str | None],
    params: Params | None = None,
    nonce_check: Callable[[str, str], bool] | None = None,
    accept_encoded_hash: bool = True,
) -> dict[str, Any]:
    """Verify a request's token in the order of §2.4 and return its claims.

    ``authorization`` is the header value (``Bearer <jwt>``) or a bare token. ``secret_for(access_key)``
    returns the secret or ``None`` for an unknown key (it may itself raise ``UpbitAuthError`` such as
    ``expired_access_key``/``out_of_scope``). ``nonce_check(access_key, nonce)`` returns False when the nonce
    was seen before (it should record it when fresh). ``params`` are the request's parameters in received
    order. Raises :class:`UpbitAuthError` carrying Upbit's error name.
    """
    if authorization is None or not authorization.strip():
        raise UpbitAuthError("no_authorization_token")
    token = bearer_token(authorization) if " " in authorization.strip() else authorization.strip()
    parts = decode_jwt_unverified(token)
    alg = parts.header.get("alg")
    if alg not in JWT_ALGORITHMS:
        raise UpbitAuthError("jwt_verification")
    access_key = parts.claims.get("access_key")
    if not isinstance(access_key, str) or not access_key:
        raise UpbitAuthError("jwt_verification")
    secret = secret_for(access_key)
    if secret is None:
        raise UpbitAuthError("invalid_access_key")
    expected = hmac.new(secret.encode("utf-8"), parts.signing_input, JWT_ALGORITHMS[alg]).digest()
    if not hmac.compare_digest(expected, parts.signature):
        raise UpbitAuthError("jwt_verification")
    nonce = parts.claims.get("nonce")
    if not isinstance(nonce, (str, int)) or isinstance(nonce, bool) or str(nonce) == "":
        raise UpbitAuthError("jwt_verification")
    if nonce_check is not None and not nonce_check(access_key, str(nonce)):
        raise UpbitAuthError("nonce_used")
    pairs = param_pairs(params)
    if pairs:
        got = parts.claims.get("query_hash")
        if not isinstance(got, str):
            raise UpbitAuthError("invalid_query_payload")
        hash_alg = str(parts.claims.get("query_hash_alg") or "SHA512").upper()
        if hash_alg != "SHA512":
            raise UpbitAuthError("invalid_query_payload")
        candidates = {query_string_for_hash(pairs)}
        if accept_encoded_hash:
            candidates.add(query_string_encoded(pairs))
        if not any(
            hmac.compare_digest(hashlib.sha512(c.encode("utf-8")).hexdigest(), got.lower())
            for c in candidates
        ):
            raise UpbitAuthError("invalid_query_payload")
    return parts.claims


class NonceCache:
    """Per-access-key set of seen nonces, bounded (oldest forgotten first)."""

    def __init__(self, max_per_key: int = 100_000) -> None:
        self.max_per_key = max_per_key
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def check(self, access_key: str, nonce: str) -> bool:
        seen = self._seen.setdefault(access_key, OrderedDict())
        if nonce in seen:
            return False
        seen[nonce] = None
        if len(seen) > self.max_per_key:
            seen.popitem(last=False)
        return True


# ------------------------------------------------------------------------------------------------------------
# Rate limits (§3)
# ------------------------------------------------------------------------------------------------------------

# group -> requests per second. The ``candles`` spelling is what the wire shows in Remaining-Req.
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "market": 10,
    "candles": 10,
    "trade": 10,
    "ticker": 10,
    "orderbook": 10,
    "default": 30,
    "order": 12,  # KR since 2026-08-21 (§3.1; the global docs still say 8)
    "order-test": 8,
    "order-cancel-all": 1,
    "websocket-connect": 5,
}
# The deprecated ``min`` value echoed in the header (§3.2).
REMAINING_REQ_MIN: dict[str, int] = {"default": 1800, "order": 480, "order-test": 480, "order-cancel-all": 30}
QUOTATION_MIN = 600

_REMAINING_RE = re.compile(r"group=([a-z\-]+); min=([0-9]+); sec=([0-9]+)")


@dataclass(frozen=True)
class RemainingReq:
    group: str
    sec: int
    min: int = QUOTATION_MIN


def format_remaining_req(group: str, sec: int, min_: int | None = None) -> str:
    """``group=<group>; min=<n>; sec=<n>``."""
    if min_ is None:
        min_ = REMAINING_REQ_MIN.get(group, QUOTATION_MIN)
    return f"group={group}; min={min_}; sec={max(0, int(sec))}"


def parse_remaining_req(value: str | None) -> RemainingReq | None:
    if not value:
        return None
    m = _REMAINING_RE.search(value)
    if m is None:
        return None
    return RemainingReq(group=m.group(1), min=int(m.group(2)), sec=int(m.group(3)))


# ------------------------------------------------------------------------------------------------------------
# WebSocket key maps (§10.3, §11)
# ------------------------------------------------------------------------------------------------------------

TICKER_SIMPLE: dict[str, str] = {
    "type": "ty", "code": "cd", "opening_price": "op", "high_price": "hp", "low_price": "lp",
    "trade_price": "tp", "prev_closing_price": "pcp", "change": "c", "change_price": "cp",
    "signed_change_price": "scp", "change_rate": "cr", "signed_change_rate": "scr", "trade_volume": "tv",
    "acc_trade_volume": "atv", "acc_trade_volume_24h": "atv24h", "acc_trade_price": "atp",
    "acc_trade_price_24h": "atp24h", "trade_date": "tdt", "trade_time": "ttm", "trade_timestamp": "ttms",
    "ask_bid": "ab", "acc_ask_volume": "aav", "acc_bid_volume": "abv", "highest_52_week_price": "h52wp",
    "highest_52_week_date": "h52wdt", "lowest_52_week_price": "l52wp", "lowest_52_week_date": "l52wdt",
    "market_state": "ms", "is_trading_suspended": "its", "delisting_date": "dd", "market_warning": "mw",
    "timestamp": "tms", "stream_type": "st", "trade_status": "ts", "market_state_for_ios": "msfi",
}  # fmt: skip
TRADE_SIMPLE: dict[str, str] = {
    "type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_date": "td", "trade_time": "ttm",
    "trade_timestamp": "ttms", "timestamp": "tms", "sequential_id": "sid", "best_ask_price": "bap",
    "best_ask_size": "bas", "best_bid_price": "bbp", "best_bid_size": "bbs", "stream_type": "st",
}  # fmt: skip
ORDERBOOK_SIMPLE: dict[str, str] = {
    "type": "ty", "code": "cd", "timestamp": "tms", "total_ask_size": "tas", "total_bid_size": "tbs",
    "orderbook_units": "obu", "level": "lv", "stream_type": "st",
}  # fmt: skip
ORDERBOOK_UNIT_SIMPLE: dict[str, str] = {
    "ask_price": "ap",
    "bid_price": "bp",
    "ask_size": "as",
    "bid_size": "bs",
}
MYORDER_SIMPLE: dict[str, str] = {
    "type": "ty", "code": "cd", "uuid": "uid", "ask_bid": "ab", "order_type": "ot", "state": "s",
    "trade_uuid": "tuid", "price": "p", "avg_price": "ap", "volume": "v", "remaining_volume": "rv",
    "executed_volume": "ev", "trades_count": "tc", "reserved_fee": "rsf", "remaining_fee": "rmf",
    "paid_fee": "pf", "locked": "l", "executed_funds": "ef", "time_in_force": "tif", "trade_fee": "tf",
    "is_maker": "im", "identifier": "id", "smp_type": "smpt", "prevented_volume": "pv",
    "prevented_locked": "pl", "trade_timestamp": "ttms", "order_timestamp": "otms", "timestamp": "tms",
    "stream_type": "st",
}  # fmt: skip
MYASSET_SIMPLE: dict[str, str] = {
    "type": "ty", "asset_uuid": "astuid", "assets": "ast", "asset_timestamp": "asttms", "timestamp": "tms",
    "stream_type": "st",
}  # fmt: skip
MYASSET_ASSET_SIMPLE: dict[str, str] = {"currency": "cu", "balance": "b", "locked": "l"}

SIMPLE_MAPS: dict[str, dict[str, str]] = {
    "ticker": TICKER_SIMPLE,
    "trade": TRADE_SIMPLE,
    "orderbook": ORDERBOOK_SIMPLE,
    "myOrder": MYORDER_SIMPLE,
    "myAsset": MYASSET_SIMPLE,
}
# Nested list fields: DEFAULT key -> (SIMPLE key, element map).
_NESTED: dict[str, tuple[str, dict[str, str]]] = {
    "orderbook_units": ("obu", ORDERBOOK_UNIT_SIMPLE),
    "assets": ("ast", MYASSET_ASSET_SIMPLE),
}


def _invert(m: Mapping[str, str]) -> dict[str, str]:
    return {v: k for k, v in m.items()}


DEFAULT_MAPS: dict[str, dict[str, str]] = {t: _invert(m) for t, m in SIMPLE_MAPS.items()}
_NESTED_BACK: dict[str, tuple[str, dict[str, str]]] = {s: (d, _invert(m)) for d, (s, m) in _NESTED.items()}


def to_simple(message: Mapping[str, Any]) -> dict[str, Any]:
    """DEFAULT -> SIMPLE keys (unknown keys pass through unchanged)."""
    mapping = SIMPLE_MAPS.get(str(message.get("type")), {})
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in _NESTED and isinstance(value, list):
            skey, emap = _NESTED[key]
            out[skey] = [{emap.get(k, k): v for k, v in item.items()} for item in value]
        else:
            out[mapping.get(key, key)] = value
    return out


def to_default(message: Mapping[str, Any]) -> dict[str, Any]:
    """SIMPLE -> DEFAULT keys (a DEFAULT message passes through unchanged)."""
    if "type" in message:
        return dict(message)
    mapping = DEFAULT_MAPS.get(str(message.get("ty")), {})
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in _NESTED_BACK and isinstance(value, list):
            dkey, emap = _NESTED_BACK[key]
            out[dkey] = [{emap.get(k, k): v for k, v in item.items()} for item in value]
        else:
            out[mapping.get(key, key)] = value
    return out


def split_code_depth(code: str) -> tuple[str, int]:
    """``"KRW-BTC.5"`` -> ``("KRW-BTC", 5)``; no or unsupported suffix -> 30 (§10.2)."""
    base, dot, suffix = code.partition(".")
    if not dot:
        return code, ORDERBOOK_LEVELS
    try:
        n = int(suffix)
    except ValueError:
        return base, ORDERBOOK_LEVELS
    return base, n if n in ORDERBOOK_DEPTHS else ORDERBOOK_LEVELS


# WebSocket error names (§4.3)
WS_ERRORS: dict[str, str] = {
    "INVALID_AUTH": "인증 정보가 올바르지 않습니다.",
    "WRONG_FORMAT": "요청 형식이 올바르지 않습니다.",
    "NO_TICKET": "티켓이 존재하지 않거나, 유효하지 않습니다.",
    "NO_TYPE": "타입이 존재하지 않거나, 유효하지 않습니다.",
    "NO_CODES": "코드가 존재하지 않거나, 유효하지 않습니다.",
    "INVALID_PARAM": "요청 파라미터가 올바르지 않습니다.",
}
PUBLIC_WS_TYPES = frozenset({"ticker", "trade", "orderbook"})
PRIVATE_WS_TYPES = frozenset({"myOrder", "myAsset"})
WS_FORMATS = frozenset({"DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"})


# ------------------------------------------------------------------------------------------------------------
# Formatting helpers
# ------------------------------------------------------------------------------------------------------------

KST = dt.timezone(dt.timedelta(hours=9), "KST")


def decimal_str(value: Decimal | int | str) -> str:
    """Exchange REST decimal string: plain notation, no exponent, no needless trailing zeros."""
    d = Decimal(value)
    if d == 0:
        return "0"
    s = format(d.normalize(), "f")
    return s


def parse_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a wire value (string/number), or None when absent/invalid."""
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def iso_kst(ts_ms: int, micro: bool = False) -> str:
    """``2025-07-04T15:00:00+09:00`` (exchange ``created_at``); with microseconds for trades."""
    t = dt.datetime.fromtimestamp(ts_ms / 1000, tz=KST)
    spec = "microseconds" if micro else "seconds"
    return t.isoformat(timespec=spec)
