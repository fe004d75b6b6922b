"""The live order path stays lean: a regression that adds database queries or exchange round trips to
``POST /api/trading/orders/limit/`` fails here."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

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
    # profile, idempotency look-up, kill switch, pending insert, locked re-read, update, fills (response),
    # plus the savepoint/transaction statements of the two required commits.
    real = [q for q in sql if not q.upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"))]
    assert len(real) == 7, "\n".join(real)
    assert not any("exchangecredential" in q.lower() for q in sql)
    assert sum("trading_tradingprofile" in q.lower() for q in sql) == 1
