"""The live order path stays lean: a regression that adds database queries or exchange round trips to
``POST /api/trading/orders/limit/`` fails here. Also the safety of what made it lean: the cached balance
snapshot never refuses an order on stale numbers (Upbit stays authoritative), and the per-process cache of
decrypted-key exchanges is dropped when the keys change."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.trading.conftest import d
from trading.exchanges.upbit import UpbitExchange

pytestmark = pytest.mark.django_db


def _limit_payload() -> dict[str, str]:
    # Rests on the scripted book (best bid 99,999,000): the ack is the exchange accepting it.
    return {"market": "KRW-BTC", "side": "bid", "price": "90000000", "volume": "0.0001"}


def test_live_limit_order_query_count(live_user: Any, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api = APIClient()
    api.force_authenticate(live_user)
    # Warm: market list, live exchange (decrypted keys), balance snapshot.
    r = api.post("/api/trading/orders/limit/", _limit_payload(), format="json", HTTP_IDEMPOTENCY_KEY="warm")
    assert r.status_code == 201, r.content

    calls: list[str] = []
    for name in ("place_order", "order_chance", "balances", "get_order"):
        real = getattr(UpbitExchange, name)

        def spy(self: Any, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(UpbitExchange, name, spy)

    with CaptureQueriesContext(connection) as ctx:
        r = api.post("/api/trading/orders/limit/", _limit_payload(), format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["mode"] == "live" and body["order"]["state"] == "open"
    assert calls == ["place_order"], calls  # no orders/chance, no accounts, no key decryption per order
    sql = [q["sql"] for q in ctx.captured_queries]
    # profile with the kill switch, idempotency look-up, pending insert, locked re-read, update, fills
    # (response), plus the savepoint/transaction statements of the two required commits.
    control = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
    real = [q for q in sql if not q.upper().startswith(control)]
    assert len(real) == 6, "\n".join(real)
    assert not any("exchangecredential" in q.lower() for q in sql)
    assert sum("trading_tradingprofile" in q.lower() for q in sql) == 1


def _snapshot_set(user_id: int, krw: str, btc: str) -> None:
    import time
    from decimal import Decimal

    from django.core.cache import cache

    from trading.exchanges.base import Balance
    from trading.services.orders import LiveSnapshot, live_balances_check_key

    z = Decimal(0)
    balances = [
        Balance(currency="KRW", balance=Decimal(krw), locked=z, avg_buy_price=z),
        Balance(currency="BTC", balance=Decimal(btc), locked=z, avg_buy_price=z),
    ]
    cache.set(live_balances_check_key(user_id), LiveSnapshot(balances, time.time() + 60), 60)


def _bid(user: Any, volume: str) -> Any:
    from trading import services

    return services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d(volume)
    )


def test_stale_low_snapshot_never_refuses_an_order_the_exchange_would_take(live_user: Any, sim: Any) -> None:
    _snapshot_set(live_user.pk, krw="1", btc="0")  # says broke; the exchange holds 10,000,000 KRW
    order = _bid(live_user, "0.0001")
    assert order.state == "open" and sim.order_count(live_user.sim_account_id) == 1


def test_stale_high_snapshot_leaves_the_exchange_authoritative(live_user: Any, sim: Any) -> None:
    from trading.errors import InsufficientFunds
    from trading.models import Order

    _snapshot_set(live_user.pk, krw="100000000000", btc="0")  # says rich; the exchange holds 10,000,000 KRW
    with pytest.raises(InsufficientFunds):
        _bid(live_user, "1")
    order = Order.objects.get(user=live_user)
    assert order.state == "rejected" and order.error_code == "insufficient_funds"
    assert sim.order_count(live_user.sim_account_id) == 0


def test_bid_beyond_what_resting_orders_left_is_refused_before_sending(live_user: Any, sim: Any) -> None:
    from trading.errors import InsufficientFunds

    # 10,000,000 KRW: a 9,000,000 KRW bid rests (its funds locked in the snapshot), then a second one is
    # refused on the exchange's numbers before anything is sent.
    _bid(live_user, "0.1")
    with pytest.raises(InsufficientFunds):
        _bid(live_user, "0.1")
    assert sim.order_count(live_user.sim_account_id) == 1


def test_cached_live_exchange_is_dropped_when_keys_change(live_user: Any, sim: Any) -> None:
    from accounts.services import exchange_credential_delete, exchange_credential_save
    from trading.errors import KeysMissing
    from trading.exchanges import exchange_for

    first = exchange_for(user=live_user, mode="live")
    assert exchange_for(user=live_user, mode="live") is first  # no key read/decrypt per order
    acct = sim.account(krw=1_000_000)
    exchange_credential_save(user=live_user, access_key=acct["access_key"], secret_key=acct["secret_key"])
    second = exchange_for(user=live_user, mode="live")
    assert second is not first
    assert {b.currency: b.balance for b in second.balances()}["KRW"] == d(1_000_000)  # the new keys' account
    exchange_credential_delete(user=live_user)
    with pytest.raises(KeysMissing):
        exchange_for(user=live_user, mode="live")


def test_paper_market_buy_query_count(user: Any, sim: Any, settings: Any) -> None:
    """A paper market buy over the API with a token: one transaction, no look-up of the idempotency key (the
    unique constraint enforces it), no re-read of what it just wrote."""
    from rest_framework.authtoken.models import Token

    from market.livebook import livebook_record
    from tests.trading.test_paper_live_book import live_payload

    settings.PAPER_BOOK_MAX_AGE_MS = 60_000
    livebook_record(data=live_payload())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    body = {"market": "KRW-BTC", "amount_krw": "6000"}
    assert api.post("/api/trading/orders/buy/", body, format="json").status_code == 201  # opens the account
    with CaptureQueriesContext(connection) as ctx:
        r = api.post("/api/trading/orders/buy/", body, format="json", HTTP_IDEMPOTENCY_KEY="p2")
    assert r.status_code == 201, r.content
    assert r.json()["order"]["state"] == "done" and len(r.json()["order"]["fills"]) == 1
    control = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
    real = [q["sql"] for q in ctx.captured_queries if not q["sql"].upper().startswith(control)]
    # token + user, profile with the kill switch; then in one transaction: the balances (locked), the
    # paper order, its trades, two balance updates, our order, the position (locked) and its update, fills.
    assert len(real) == 11, "\n".join(real)
    assert not any(
        q.startswith('SELECT 1 AS "a" FROM "trading_tradingswitch"') for q in real
    )  # read with profile
    assert not any(q.startswith("SELECT") and 'FROM "trading_order"' in q for q in real)  # no key look-up
    assert not any('FROM "trading_fill"' in q or 'FROM "accounts_user"' in q for q in real)  # no re-reads
    assert sum(q.startswith("SELECT") and "trading_paperbalance" in q for q in real) == 1


def test_paper_order_refused_when_the_kill_switch_is_engaged_after_the_profile_was_read(
    user: Any, sim: Any
) -> None:
    """The kill switch read with the profile stands only for the request that read it: a profile kept longer
    (a worker's loop) reads the switch again before an order."""
    from trading import services
    from trading.errors import TradingHalted
    from trading.models import Order
    from trading.services.profiles import KILL_SWITCH_READ_FRESH_S

    services.trading_profile_ensure(user=user)  # created
    profile = services.trading_profile_ensure(user=user, with_kill_switch=True)
    assert profile.kill_switch_now is False
    services.kill_switch_engage(reason="test")
    profile.kill_switch_read_at -= KILL_SWITCH_READ_FRESH_S  # the read is old now
    with pytest.raises(TradingHalted):
        services.order_place(
            user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(6000), profile=profile
        )
    assert not Order.objects.filter(user=user).exists()


def test_api_order_refused_once_the_kill_switch_is_engaged(user: Any, sim: Any) -> None:
    from trading import services

    api = APIClient()
    api.force_authenticate(user)
    body = {"market": "KRW-BTC", "amount_krw": "6000"}
    assert api.post("/api/trading/orders/buy/", body, format="json").status_code == 201
    services.kill_switch_engage(reason="test")
    r = api.post("/api/trading/orders/buy/", body, format="json")
    assert r.status_code == 409, r.content
    assert r.json()["error"]["code"] == "trading_halted"
