"""Typed messages between apps: encode/decode round trips, delivery to the settings-declared subscribers."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pytest
from django.test import override_settings

from celery_app import app
from core.messages import MessageFormatError, message_decode, message_publish, message_subscribers
from market import batchwire
from market.messages import MarketBatch, OrderbookEvent, TickerEvent, TradeItem, TradesEvent
from mlmodel.messages import Prediction, PredictionEvent


def _prediction(**extra: Any) -> Prediction:
    fields: dict[str, Any] = {
        "market": "KRW-BTC",
        "ts": 1_764_000_000_000,
        "predicted_return": 0.0031,
        "horizon_s": 10.0,
        "model_version": "lstm-KRW-BTC v3",
        "model_version_id": 7,
        "mid": 100_000_000.0,
        "best_bid": 99_990_000.0,
        "best_ask": 100_010_000.0,
        "published_at": 1_764_000_000.5,
    }
    return Prediction(**{**fields, **extra})


def _json_round_trip(obj: Any) -> Any:
    """What a Celery JSON message or the channel layer does to the payload."""
    return json.loads(json.dumps(msgspec.to_builtins(obj)))


def test_prediction_round_trips_through_json_and_its_public_part_drops_the_private_fields() -> None:
    p = _prediction()
    assert message_decode(_json_round_trip(p), type=Prediction) == p
    public = msgspec.to_builtins(p.public())
    assert set(public) == {"market", "ts", "predicted_return", "horizon_s", "model_version", "mid"}
    assert message_decode(public, type=PredictionEvent) == p.public()


def test_a_malformed_prediction_is_refused_with_a_clear_error() -> None:
    bad = {**msgspec.to_builtins(_prediction()), "predicted_return": "a lot"}
    with pytest.raises(MessageFormatError, match="mlmodel.prediction.*predicted_return"):
        message_decode(bad, type=Prediction)
    missing = msgspec.to_builtins(_prediction())
    del missing["market"]
    with pytest.raises(MessageFormatError, match="market"):
        message_decode(missing, type=Prediction)


def test_market_batch_round_trips_and_unpacks_to_the_same_arrays() -> None:
    books = {"KRW-BTC": [(1_000, np.arange(8, dtype=np.float64).tobytes())]}
    trades = {"KRW-BTC": [(1_001, 100.0, 0.5, "BID"), (1_002, 99.0, 0.25, "ASK")]}
    packed = batchwire.pack(books, trades)
    body = batchwire.encode(packed)
    message = MarketBatch(**body)
    received = message_decode(_json_round_trip(message), type=MarketBatch)
    assert received == message
    unpacked = batchwire.decode(msgspec.structs.asdict(received))
    assert unpacked.codes == ("KRW-BTC",)
    assert np.array_equal(unpacked.book, packed.book, equal_nan=True)
    assert unpacked.t_side.tolist() == [1, -1]
    with pytest.raises(MessageFormatError, match="unknown"):
        message_decode({**body, "extra": 1}, type=MarketBatch)


def test_live_market_events_round_trip() -> None:
    book = OrderbookEvent(
        market="KRW-BTC",
        ts=1,
        asks=[[101, 0.5, 0.5]],
        bids=[[99, 1.25, 1.25]],
        total_ask_size=0.5,
        total_bid_size=1.25,
        spread=2,
        mid=100,
    )
    trades = TradesEvent(market="KRW-BTC", trades=[TradeItem(ts=2, price=100, volume=0.1, side="BID", sid=9)])
    ticker = TickerEvent(
        market="KRW-BTC",
        ts=3,
        price=100,
        open=90,
        high=110,
        low=80,
        prev_close=95,
        change="RISE",
        change_price=5,
        change_rate=0.0526315789,
        volume_24h=1.5,
        value_24h=150.0,
        acc_volume=1.0,
        acc_value=100.0,
    )
    for event in (book, trades, ticker):
        assert message_decode(_json_round_trip(event), type=type(event)) == event
    # Exact integers stay integers on the wire (KRW prices are compared as numbers in the browser).
    assert _json_round_trip(book)["asks"] == [[101, 0.5, 0.5]]


def test_the_settings_declared_subscriber_receives_the_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any], str]] = []
    monkeypatch.setattr(app, "send_task", lambda name, kwargs, queue: sent.append((name, kwargs, queue)))
    p = _prediction()
    declared = {"mlmodel.prediction": [{"task": "tests.record_prediction", "queue": "q1", "arg": "p"}]}
    with override_settings(MESSAGE_SUBSCRIBERS=declared):
        assert message_publish(message=p) == 1
    assert sent == [("tests.record_prediction", {"p": msgspec.to_builtins(p)}, "q1")]
    assert message_decode(sent[0][1]["p"], type=Prediction) == p
    # Nobody declared: nothing is sent (a lower app never falls back to a task name of its own).
    with override_settings(MESSAGE_SUBSCRIBERS={}):
        assert message_publish(message=p) == 0
    assert len(sent) == 1


def test_the_project_settings_hand_predictions_to_auto_trading_and_batches_to_the_ml_worker() -> None:
    app.loader.import_default_modules()  # every app's tasks module, as a worker loads them
    [auto] = message_subscribers(topic=Prediction.topic)
    assert auto.task in app.tasks and auto.arg == "prediction"
    [ml] = message_subscribers(topic=MarketBatch.topic)
    assert (ml.task, ml.queue, ml.arg) == ("mlmodel.tasks.ingest_market_data", "ml", "packed")
    assert ml.task in app.tasks


def test_one_failing_subscriber_does_not_stop_the_others() -> None:
    calls: list[str] = []

    def send(task: str, kwargs: dict[str, Any], queue: str) -> None:
        calls.append(task)
        if task == "a":
            raise ConnectionError("broker down")

    declared = {"mlmodel.prediction": [{"task": "a"}, {"task": "b"}]}
    with override_settings(MESSAGE_SUBSCRIBERS=declared):
        assert message_publish(message=_prediction(), send=send) == 1
    assert calls == ["a", "b"]


def test_a_malformed_subscriber_declaration_fails_loudly() -> None:
    with pytest.raises(msgspec.ValidationError):
        message_subscribers(topic="t", declared={"t": [{"task": "x", "queu": "typo"}]})
