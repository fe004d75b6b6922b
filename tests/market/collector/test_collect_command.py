"""The ``collect`` command's market selection, the prediction sink's typed message, the read-only admin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.test import RequestFactory, override_settings

from market import collector as collector_module
from market.management.commands.collect import _krw_markets
from market.models import DayUpload
from market.upbit.records import TradeRecord
from market.upbit_sim.server import SimConfig, SimulatorThread


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(markets=["KRW-BTC", "KRW-ETH", "KRW-XRP"], seed=2)) as s:
        yield s


def test_all_krw_lists_every_krw_market(sim: SimulatorThread) -> None:
    assert _krw_markets(sim.rest_url) == ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def test_bad_market_codes_are_refused() -> None:
    with pytest.raises(CommandError, match="KRW-BTC"):
        call_command("collect", "--markets", "BTC", "--no-fanout", "--no-predictions")
    with pytest.raises(CommandError, match="flush"):
        call_command("collect", "--markets", "KRW-BTC", "--flush-interval", "0")


def test_prediction_sink_publishes_the_batch_to_the_settings_declared_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery_app import app

    sent: list[tuple[str, dict[str, Any], str]] = []
    monkeypatch.setattr(
        app,
        "send_task",
        lambda name, kwargs, queue: sent.append((name, kwargs, queue)),
    )
    batcher = collector_module.PredictionBatcher(levels=2)
    batcher.add_trade(
        TradeRecord(code="KRW-BTC", ts=1, recv_ts=1, price=1.0, volume=2.0, side=1, sequential_id=1)
    )
    body = batcher.take()
    collector_module.celery_prediction_sink()(body)
    # The ML worker's task comes from settings.MESSAGE_SUBSCRIBERS, not from the collector.
    assert sent == [("mlmodel.tasks.ingest_market_data", {"packed": body}, "ml")]
    with override_settings(MESSAGE_SUBSCRIBERS={}):
        collector_module.celery_prediction_sink()(body)
    assert len(sent) == 1


def test_day_uploads_are_read_only_in_the_admin(admin_user: Any) -> None:
    model_admin = admin.site._registry[DayUpload]
    request = RequestFactory().get("/admin/market/dayupload/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
