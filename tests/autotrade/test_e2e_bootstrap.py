"""End to end from a fresh install: the collector's recorded day files -> the automatic first model (queued
by the bootstrap, trained by the ml task, promoted by the usual rule) -> live predictions -> a user's paper
auto-trading session buys and sells on the (simulated) book."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from autotrade.tasks import autotrade_on_prediction
from celery_app import app
from mlmodel import bootstrap, selectors, serving, tasks
from mlmodel.models import TrainingRun, TrainingTrigger
from mlmodel.services import model_promote
from mlmodel.tasks import ingest_market_data
from tests.autotrade.test_e2e import top
from tests.mlmodel.platform.daydata import synthetic_days
from tests.mlmodel.platform.test_bootstrap import small_model  # noqa: F401 - fixture
from tests.mlmodel.platform.test_serving import batch_of
from trading.models import Order, OrderSource, OrderState

pytestmark = pytest.mark.django_db


def test_auto_trading_runs_on_the_first_model_the_stack_trained_by_itself(
    api: Any,
    user: Any,
    sim: Any,
    settings: Any,
    small_model: None,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
):
    torch.set_num_threads(1)
    settings.MARKET_DATA_DIR = tmp_path / "data"
    settings.ML_SPIKE_DATA_DIR = tmp_path / "spikes"
    settings.ML_MAX_DATA_AGE_S = None  # recorded data replayed as if live
    # Before any model: auto-trading is refused, and the dashboard says data is being collected.
    r = api.post(
        "/api/trading/auto/start/",
        {"market": "KRW-BTC", "threshold_pct": "0", "order_krw": "100000"},
        format="json",
    )
    assert r.status_code == 409, r.content
    assert selectors.model_state_get(market="KRW-BTC")["state"] == "collecting"

    book, trades = synthetic_days(settings.MARKET_DATA_DIR)  # ~23 minutes recorded by the collector
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: queued.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        (outcome,) = bootstrap.model_bootstrap_check(markets=["KRW-BTC"])
    assert outcome.state == "queued" and len(queued) == 1
    tasks.train_model.run(**queued[0]["kwargs"])  # what the ml worker does with the message
    run = TrainingRun.objects.get()
    assert run.trigger == TrainingTrigger.BOOTSTRAP and "promote" in run.decision, run.message
    if not run.decision["promote"]:
        # The promotion rule refused it (it is never loosened): an operator promotes the candidate after
        # reading its report, as the admin lets them; auto-trading then runs on it the same way.
        assert selectors.model_state_get(market="KRW-BTC")["state"] == "not_promoted"
        model_promote(version=run.result_version, note="promoted by hand after reading the report")
    assert selectors.model_state_get(market="KRW-BTC")["state"] == "active"
    serving.reset_server()

    def send_task(name: str, kwargs: dict | None = None, queue: str | None = None, **kw: Any) -> None:
        assert name == "autotrade.tasks.autotrade_on_prediction" and queue == "default"  # MESSAGE_SUBSCRIBERS
        autotrade_on_prediction.run(**kwargs)

    monkeypatch.setattr(app, "send_task", send_task)
    r = api.post(
        "/api/trading/auto/start/",
        {"market": "KRW-BTC", "threshold_pct": "0", "order_krw": "100000", "cooldown_s": 0},
        format="json",
    )
    assert r.status_code == 201, r.content
    start_row, step = 4700, 10  # the last third of the series: the model's final test period
    for lo in range(start_row, len(book) - step, step):
        hi = lo + step
        sim.source.trade(
            "KRW-BTC", float(trades.price[trades.ts <= book.ts[hi - 1]][-1]), 0.001, "BID", sim.now()
        )
        sim.set_book("KRW-BTC", top(book, hi - 1, "ask"), top(book, hi - 1, "bid"))
        ingest_market_data.run(batch={"KRW-BTC": batch_of(book, trades, lo if lo > start_row else 0, hi)})
        if Order.objects.filter(
            user=user, source=OrderSource.AUTO, side="ask", state=OrderState.DONE
        ).exists():
            break
    done = Order.objects.filter(user=user, source=OrderSource.AUTO, state=OrderState.DONE)
    assert done.filter(side="bid").exists() and done.filter(side="ask").exists()
    assert TrainingRun.objects.count() == 1  # the bootstrap trained once
