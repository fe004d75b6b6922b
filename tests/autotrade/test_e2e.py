"""End to end: collector batches -> ml worker predictions -> a user's paper auto-trading session ->
orders filled on the live (simulated) book. In-process here; through a real Celery worker on Redis in
test_e2e_celery.py."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import torch

from autotrade.models import AutoTradeDecision
from autotrade.tasks import autotrade_on_prediction
from celery_app import app
from mlmodel import serving
from mlmodel.models import Prediction
from mlmodel.services.params import TrainParams
from mlmodel.services.registry import model_promote
from mlmodel.services.train import model_train
from mlmodel.tasks import ingest_market_data
from tests.mlmodel.platform.conftest import small_params
from tests.mlmodel.platform.daydata import synthetic_days
from tests.mlmodel.platform.test_serving import batch_of
from trading.models import Order, OrderSource, OrderState, PaperBalance

pytestmark = pytest.mark.django_db


def top(book: Any, i: int, side: str, levels: int = 5) -> list[tuple[float, float]]:
    px = book.ask_px if side == "ask" else book.bid_px
    sz = book.ask_sz if side == "ask" else book.bid_sz
    return [(float(px[i, k]), float(sz[i, k])) for k in range(levels)]


def test_paper_session_buys_and_sells_from_live_predictions(
    api, user, sim, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    torch.set_num_threads(1)
    settings.MARKET_DATA_DIR = tmp_path / "data"
    settings.ML_SPIKE_DATA_DIR = tmp_path / "spikes"
    settings.ML_MAX_DATA_AGE_S = None  # recorded data replayed as if live
    book, trades = synthetic_days(settings.MARKET_DATA_DIR)
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    serving.reset_server()
    # The ml worker hands each prediction to the default queue by task name; run that task right here.
    handed: list[dict] = []

    def send_task(name: str, kwargs: dict | None = None, queue: str | None = None, **kw: Any) -> None:
        assert name == "autotrade.tasks.autotrade_on_prediction" and queue == "default"  # MESSAGE_SUBSCRIBERS
        handed.append(kwargs["prediction"])
        autotrade_on_prediction.run(**kwargs)

    monkeypatch.setattr(app, "send_task", send_task)
    r = api.post(
        "/api/trading/auto/start/",
        {"market": "KRW-BTC", "threshold_pct": "0", "order_krw": "100000", "cooldown_s": 0},
        format="json",
    )
    assert r.status_code == 201, r.content
    start_row, step = 4000, 10  # the last third of the series: after the model's training period
    for lo in range(start_row, len(book) - step, step):
        hi = lo + step
        # The live market the paper exchange fills against is the book the collector just sent.
        sim.source.trade(
            "KRW-BTC", float(trades.price[trades.ts <= book.ts[hi - 1]][-1]), 0.001, "BID", sim.now()
        )
        sim.set_book("KRW-BTC", top(book, hi - 1, "ask"), top(book, hi - 1, "bid"))
        ingest_market_data.run(batch={"KRW-BTC": batch_of(book, trades, lo if lo > start_row else 0, hi)})
        sells = Order.objects.filter(user=user, source=OrderSource.AUTO, side="ask", state=OrderState.DONE)
        if sells.exists():
            break
    preds = Prediction.objects.filter(market="KRW-BTC").count()
    assert preds == len(handed) > 50
    decisions = AutoTradeDecision.objects.filter(user=user)
    assert decisions.count() == preds  # every prediction was judged and logged
    buys = Order.objects.filter(user=user, source=OrderSource.AUTO, side="bid", state=OrderState.DONE)
    sells = Order.objects.filter(user=user, source=OrderSource.AUTO, side="ask", state=OrderState.DONE)
    assert buys.exists() and sells.exists()
    first_buy = decisions.filter(action="buy").order_by("prediction_ts").first()
    assert first_buy.predicted_return > first_buy.threshold + first_buy.cost
    assert first_buy.cost == first_buy.fee_cost + first_buy.half_spread and first_buy.fee_cost == Decimal(
        "0.001"
    )
    first_sell = decisions.filter(action="sell").order_by("prediction_ts").first()
    assert first_sell.predicted_return < -(first_sell.threshold + first_sell.cost)
    assert first_sell.prediction_ts > first_buy.prediction_ts
    krw = PaperBalance.objects.get(user=user, currency="KRW")
    assert krw.balance != Decimal(settings.PAPER_STARTING_KRW)  # fills and fees moved the paper account
