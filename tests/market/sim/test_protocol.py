"""The shared Upbit protocol module: JWT (the §2.3 test vector), tick table, headers, key maps, errors."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import orjson
import pytest

from market.upbit import protocol as p

VECTOR_PARAMS = [
    ("market", "KRW-BTC"),
    ("side", "bid"),
    ("volume", "0.01"),
    ("price", "100000000"),
    ("ord_type", "limit"),
]
VECTOR_HASH = (
    "04f10e7f849051645e088a4217a3e1f938268054df0e99b93ac74627b11f6931"
    "e501657d777720f9d19fc2a6649e3afc4a6e4e83ccf3d0569be6bde4633750dc"
)
VECTOR_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJhY2Nlc3Nfa2V5IjoidGVzdC1hY2Nlc3Mta2V5Iiwibm9uY2UiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAi"
    "LCJxdWVyeV9oYXNoIjoiMDRmMTBlN2Y4NDkwNTE2NDVlMDg4YTQyMTdhM2UxZjkzODI2ODA1NGRmMGU5OWI5M2FjNzQ2MjdiMTFmNjkz"
    "MWU1MDE2NTdkNzc3NzIwZjlkMTlmYzJhNjY0OWUzYWZjNGE2ZTRlODNjY2YzZDA1NjliZTZiZGU0NjMzNzUwZGMiLCJxdWVyeV9oYXNo"
    "X2FsZyI6IlNIQTUxMiJ9.AcmkWuf-_1KCbeALUXlW72hKSTa21Uz9yLxZ6GmGjwY"
)
NONCE = "00000000-0000-4000-8000-000000000000"


def _secret(key: str) -> str | None:
    return "test-secret-key" if key == "test-access-key" else None


def test_query_hash_matches_the_test_vector() -> None:
    assert p.query_string_for_hash(VECTOR_PARAMS) == (
        "market=KRW-BTC&side=bid&volume=0.01&price=100000000&ord_type=limit"
    )
    assert p.query_hash(VECTOR_PARAMS) == VECTOR_HASH
    assert p.query_hash([("market", "KRW-BTC")]) == (
        "b749dfc2e17f75e5b46c8161f97fe7c9298ed4167ea21c5c94d16573efd8a801"
        "351470c0ff1a9a3f1e763f8249968218c04c571c8b45aa80cd4588e6c4be0738"
    )
    # A dict keeps insertion order, so it hashes the same.
    assert p.query_hash(dict(VECTOR_PARAMS)) == VECTOR_HASH


def test_build_jwt_reproduces_the_hs256_vector_exactly() -> None:
    token = p.build_jwt("test-access-key", "test-secret-key", VECTOR_PARAMS, nonce=NONCE)
    assert token == VECTOR_TOKEN


def test_verify_jwt_accepts_the_vector_and_returns_claims() -> None:
    claims = p.verify_jwt("Bearer " + VECTOR_TOKEN, secret_for=_secret, params=VECTOR_PARAMS)
    assert claims == {
        "access_key": "test-access-key",
        "nonce": NONCE,
        "query_hash": VECTOR_HASH,
        "query_hash_alg": "SHA512",
    }


def test_verify_jwt_hs512_and_no_params() -> None:
    token = p.build_jwt("test-access-key", "test-secret-key", None, alg="HS512")
    claims = p.verify_jwt(f"Bearer {token}", secret_for=_secret)
    assert set(claims) == {"access_key", "nonce"}


@pytest.mark.parametrize(
    ("auth", "params", "name"),
    [
        (None, None, "no_authorization_token"),
        ("Basic abc", None, "no_authorization_token"),
        ("Bearer not-a-jwt", None, "jwt_verification"),
        ("Bearer " + p.build_jwt("test-access-key", "wrong-secret", None), None, "jwt_verification"),
        ("Bearer " + p.build_jwt("nobody", "test-secret-key", None), None, "invalid_access_key"),
        (
            "Bearer " + p.build_jwt("test-access-key", "test-secret-key", None),
            [("a", "1")],
            "invalid_query_payload",
        ),
        (
            "Bearer " + p.build_jwt("test-access-key", "test-secret-key", [("market", "KRW-ETH")]),
            [("market", "KRW-BTC")],
            "invalid_query_payload",
        ),
    ],
)
def test_verify_jwt_rejections_carry_upbit_names(auth: str | None, params: list | None, name: str) -> None:
    with pytest.raises(p.UpbitAuthError) as exc:
        p.verify_jwt(auth, secret_for=_secret, params=params)
    assert exc.value.name == name
    assert exc.value.status == 401
    assert exc.value.body() == {"error": {"name": name, "message": p.ERRORS[name][1]}}


def test_verify_jwt_rejects_a_reused_nonce() -> None:
    cache = p.NonceCache()
    token = p.build_jwt("test-access-key", "test-secret-key", None, nonce="n-1")
    p.verify_jwt(token, secret_for=_secret, nonce_check=cache.check)
    with pytest.raises(p.UpbitAuthError) as exc:
        p.verify_jwt(token, secret_for=_secret, nonce_check=cache.check)
    assert exc.value.name == "nonce_used"


def test_verify_jwt_rejects_a_tampered_payload_even_with_a_valid_signature_elsewhere() -> None:
    head, payload, sig = VECTOR_TOKEN.split(".")
    other = p.build_jwt("test-access-key", "test-secret-key", [("market", "KRW-BTC")], nonce=NONCE)
    forged = ".".join([head, other.split(".")[1], sig])
    with pytest.raises(p.UpbitAuthError) as exc:
        p.verify_jwt(forged, secret_for=_secret, params=[("market", "KRW-BTC")])
    assert exc.value.name == "jwt_verification"


def test_array_params_and_pyupbit_style_encoded_hash() -> None:
    params = {"states": ["done", "cancel"], "to": "2026-01-01T00:00:00+09:00"}
    assert p.query_string_for_hash(params) == "states[]=done&states[]=cancel&to=2026-01-01T00:00:00+09:00"
    # pyupbit hashes urlencode(...) (":" and "+" percent-encoded): the verifier accepts that form too.
    encoded = p.query_string_encoded(params)
    assert "%3A" in encoded and "states[]=done" in encoded
    import base64
    import hmac
    import json

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    payload = {
        "access_key": "test-access-key",
        "nonce": "x",
        "query_hash": hashlib.sha512(encoded.encode()).hexdigest(),
        "query_hash_alg": "SHA512",
    }
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(b"test-secret-key", signing.encode(), hashlib.sha256).digest()
    token = signing + "." + b64(sig)
    assert p.verify_jwt(token, secret_for=_secret, params=params)["nonce"] == "x"
    with pytest.raises(p.UpbitAuthError):
        p.verify_jwt(token, secret_for=_secret, params=params, accept_encoded_hash=False)


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("150000000", "1000"),
        ("2000000", "1000"),
        ("1999999", "1000"),
        ("999999", "500"),
        ("500000", "500"),
        ("499999", "100"),
        ("100000", "100"),
        ("99999", "50"),
        ("50000", "50"),
        ("49999", "10"),
        ("10000", "10"),
        ("9999", "5"),
        ("5000", "5"),
        ("4999", "1"),
        ("1000", "1"),
        ("100", "1"),
        ("99.9", "0.1"),
        ("10", "0.1"),
        ("9.99", "0.01"),
        ("0.5", "0.001"),
        ("0.05", "0.0001"),
        ("0.005", "0.00001"),
        ("0.0005", "0.000001"),
        ("0.00005", "0.0000001"),
        ("0.000005", "0.00000001"),
    ],
)
def test_krw_tick_table(price: str, tick: str) -> None:
    assert p.krw_tick_size(Decimal(price)) == Decimal(tick)


def test_tick_grid_and_rounding() -> None:
    assert p.is_on_tick(Decimal("149001000"))
    assert not p.is_on_tick(Decimal("149000500"))
    assert p.is_on_tick(Decimal("99.9"))
    assert not p.is_on_tick(Decimal("99.95"))
    assert not p.is_on_tick(Decimal("0"))
    assert p.round_to_tick(Decimal("149000123"), "down") == Decimal("149000000")
    assert p.round_to_tick(Decimal("149000123"), "up") == Decimal("149001000")
    assert p.round_to_tick(Decimal("149000500"), "nearest") == Decimal("149001000")
    assert p.round_to_tick(Decimal("99.95"), "up") == Decimal("100")
    assert p.round_to_tick(Decimal("12.345"), "down") == Decimal("12.3")
    assert p.round_to_tick(Decimal("12.345"), "up") == Decimal("12.4")
    # The old (pre-2024) table for replaying old data: 1,000-10,000 KRW used a 5 KRW tick.
    assert p.krw_tick_size(Decimal("1500"), p.KRW_TICK_TABLE_PRE2024) == Decimal("5")
    assert p.krw_tick_size_float(150_000_000.0) == 1000.0


def test_market_rule_constants() -> None:
    assert Decimal("0.0005") == p.FEE_RATE
    assert Decimal(5000) == p.MIN_ORDER_TOTAL_KRW
    assert Decimal(1_000_000_000) == p.MAX_ORDER_TOTAL_KRW


def test_remaining_req_format_and_parse() -> None:
    assert p.format_remaining_req("order", 7) == "group=order; min=480; sec=7"
    assert p.format_remaining_req("ticker", 9) == "group=ticker; min=600; sec=9"
    r = p.parse_remaining_req("group=default; min=1800; sec=29")
    assert r == p.RemainingReq(group="default", sec=29, min=1800)
    assert p.parse_remaining_req("order-cancel-all stuff") is None
    assert p.parse_remaining_req("group=order-cancel-all; min=30; sec=0") == p.RemainingReq(
        "order-cancel-all", 0, 30
    )


def test_simple_key_maps_round_trip_with_nested_units() -> None:
    book = {
        "type": "orderbook",
        "code": "KRW-BTC",
        "timestamp": 1,
        "total_ask_size": 1.5,
        "total_bid_size": 2.5,
        "orderbook_units": [{"ask_price": 2.0, "bid_price": 1.0, "ask_size": 1.5, "bid_size": 2.5}],
        "level": 0,
        "stream_type": "SNAPSHOT",
    }
    simple = p.to_simple(book)
    assert simple == {
        "ty": "orderbook",
        "cd": "KRW-BTC",
        "tms": 1,
        "tas": 1.5,
        "tbs": 2.5,
        "obu": [{"ap": 2.0, "bp": 1.0, "as": 1.5, "bs": 2.5}],
        "lv": 0,
        "st": "SNAPSHOT",
    }
    assert p.to_default(simple) == book
    trade = {"type": "trade", "code": "KRW-BTC", "trade_date": "2025-07-04", "sequential_id": 5}
    assert p.to_simple(trade) == {"ty": "trade", "cd": "KRW-BTC", "td": "2025-07-04", "sid": 5}
    ticker = {"type": "ticker", "trade_date": "20250704", "acc_trade_price_24h": 1.0}
    assert p.to_simple(ticker) == {"ty": "ticker", "tdt": "20250704", "atp24h": 1.0}
    assert p.to_default(p.to_simple(ticker)) == ticker


def test_code_depth_suffix() -> None:
    assert p.split_code_depth("KRW-BTC") == ("KRW-BTC", 30)
    assert p.split_code_depth("KRW-BTC.5") == ("KRW-BTC", 5)
    assert p.split_code_depth("KRW-BTC.15") == ("KRW-BTC", 15)
    assert p.split_code_depth("KRW-BTC.20") == ("KRW-BTC", 30)
    assert p.split_code_depth("KRW-BTC.x") == ("KRW-BTC", 30)


def test_the_one_error_parser_handles_json_text_and_integer_names() -> None:
    from market.upbit.errors import error_from_response

    e = error_from_response(400, b'{"error":{"name":"under_min_total_bid","message":"m"}}')
    assert (e.name, e.status, e.message) == ("under_min_total_bid", 400, "m")
    assert not isinstance(e, p.UpbitAuthError)
    a = error_from_response(401, '{"error":{"name":"nonce_used","message":"x"}}')
    assert isinstance(a, p.UpbitAuthError) and a.name == "nonce_used"
    q = error_from_response(404, '{"error":{"name":404,"message":"Code not found"}}')
    assert q.name == 404
    t = error_from_response(429, "Too many API requests.")
    assert t.name == "too_many_requests" and t.status == 429


def test_every_auth_error_name_maps_to_an_auth_failure_in_the_client_and_in_trading() -> None:
    from market.upbit.errors import error_from_response
    from trading.errors import ExchangeAuthFailed, from_upbit

    assert "thirdparty_agreement_required" in p.AUTH_ERROR_NAMES
    for name in p.AUTH_ERROR_NAMES:
        body = orjson.dumps({"error": {"name": name, "message": ""}})
        err = error_from_response(401, body)
        assert isinstance(err, p.UpbitAuthError), name
        assert isinstance(from_upbit(p.UpbitError(name, "", 401)), ExchangeAuthFailed), name


def test_one_krw_market_rule() -> None:
    assert p.is_krw_market("KRW-BTC") and p.is_krw_market("KRW-1INCH")
    for bad in ("BTC-ETH", "krw-btc", "KRW-", "KRW-BTC\n", "KRW-" + "A" * 16, " KRW-BTC"):
        assert not p.is_krw_market(bad), bad


def test_decimal_strings_and_times() -> None:
    assert p.decimal_str(Decimal("1E+8")) == "100000000"
    assert p.decimal_str(Decimal("0.0100")) == "0.01"
    assert p.decimal_str(Decimal("0.00000001")) == "0.00000001"
    assert p.decimal_str(Decimal("0")) == "0"
    assert p.parse_decimal("0.5") == Decimal("0.5")
    assert p.parse_decimal("NaN") is None and p.parse_decimal("x") is None and p.parse_decimal(None) is None
    assert p.iso_kst(1751608800000) == "2025-07-04T15:00:00+09:00"
    assert p.iso_kst(1751608800597, micro=True) == "2025-07-04T15:00:00.597000+09:00"
