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


def test_scheduled_order_firing_delay_is_observed(client, user, sim):
    import datetime as dt

    from django.utils import timezone

    from trading.models import ScheduledOrder
    from trading.services.scheduled import scheduled_orders_fire_due

    so = services.scheduled_order_create(
        user=user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        trigger_type="time",
        trigger_at=timezone.now() + dt.timedelta(seconds=1),
    )
    ScheduledOrder.objects.filter(pk=so.pk).update(trigger_at=timezone.now() - dt.timedelta(seconds=3))
    before = scrape(client)
    assert scheduled_orders_fire_due() == [so.pk]
    text = scrape(client)
    name = "observator_scheduled_order_fire_delay_seconds"
    assert sample(text, f"{name}_count") - sample(before, f"{name}_count") == 1
    assert sample(text, f"{name}_sum") - sample(before, f"{name}_sum") >= 3
    assert sample(text, "observator_orders_placed_total", mode="paper", source="scheduled") >= 1
