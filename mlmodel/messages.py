"""Messages the mlmodel app publishes: the prediction (to its settings-declared subscribers, e.g.
auto-trading) and its public part (the live ``prediction`` event of ``/ws/market/``).
Catalogue: docs/architecture.md."""

from __future__ import annotations

from core.messages import Message


class PredictionEvent(Message):
    """The public part of a prediction, pushed to ``market.<CODE>`` as ``market.prediction`` (browsers)."""

    market: str
    ts: int  # time of the last order book the prediction saw, epoch ms
    predicted_return: float  # mid-price return expected over ``horizon_s``
    horizon_s: float
    model_version: str  # the model's label, e.g. "lstm-KRW-BTC v3"
    mid: float


class Prediction(PredictionEvent):
    """One market's prediction by its active model, for ``MESSAGE_SUBSCRIBERS["mlmodel.prediction"]``."""

    topic = "mlmodel.prediction"

    model_version_id: int
    best_bid: float
    best_ask: float
    published_at: float  # epoch seconds when the ML worker sent it (subscribers drop stale ones)

    def public(self) -> PredictionEvent:
        return PredictionEvent(
            market=self.market,
            ts=self.ts,
            predicted_return=self.predicted_return,
            horizon_s=self.horizon_s,
            model_version=self.model_version,
            mid=self.mid,
        )
