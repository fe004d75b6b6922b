"""/metrics after a paper order: placed and rejected orders by reason, the ack latency (core/metrics.py)."""

from __future__ import annotations

import pytest

from core.errors import ApplicationError
from tests.core.test_metrics import sample, scrape
from tests.trading.conftest import d
from trading import services

pytestmark = pytest.mark.django_db


def test_paper_orders_placed_and_rejected_are_counted(client, user, sim):
    before = scrape(client)
    services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(10_000))
    with pytest.raises(ApplicationError) as refused:
        services.order_place(user=user, market="KRW-BTC", side="bid", ord_type="price", price=d(1))
    text = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert delta("observator_orders_placed_total", mode="paper", source="manual") == 1
    assert delta("observator_orders_rejected_total", reason=refused.value.code) == 1
    assert delta("observator_order_ack_seconds_count", mode="paper") == 1
