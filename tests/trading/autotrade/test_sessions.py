"""Auto-trading sessions against the paper exchange (filled on the simulator's live book)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tests.accounts.factories import UserFactory
from tests.trading.autotrade.conftest import prediction
from trading import autotrade
from trading.models import Order, OrderSource, OrderState, OrdType, Side
from trading.models_autotrade import AutoTradeDecision, AutoTradeSession, AutoTradeState
from trading.services import kill_switch_engage, order_place
from trading.services.profiles import auto_trading_halt, risk_limits_update
from trading.tasks_autotrade import autotrade_on_prediction

pytestmark = pytest.mark.django_db
D = Decimal


def drain(channel: str) -> list[dict]:
    """Every message waiting on an in-memory channel (stops after 50 ms of silence)."""
    import asyncio

    layer = get_channel_layer()
    out: list[dict] = []

    async def _get() -> None:
        while True:
            try:
                out.append(await asyncio.wait_for(layer.receive(channel), timeout=0.05))
            except TimeoutError:
                return

    async_to_sync(_get)()
    return out


def start(user: Any, **kw: Any) -> AutoTradeSession:
    params = {"market": "KRW-BTC", "threshold": D("0.0005"), "order_krw": D(100_000), "cooldown_s": 0}
    return autotrade.autotrade_start(user=user, **{**params, **kw})


def decisions(session: AutoTradeSession) -> list[AutoTradeDecision]:
    return list(AutoTradeDecision.objects.filter(session=session).order_by("prediction_ts"))


def test_buy_above_edge_is_filled_and_logged_with_its_costs(
    user, wide_book, active_models, django_capture_on_commit_callbacks, settings
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # listen here
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{user.pk}", channel)
    s = start(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert autotrade_on_prediction.run(prediction=prediction(0.0025)) == 1  # exactly at the edge
        assert autotrade_on_prediction.run(prediction=prediction(0.0030)) == 1
    hold, buy = decisions(s)
    assert (hold.action, hold.reason, hold.order_id) == ("hold", "below_threshold", None)
    assert buy.action == "buy" and buy.outcome == "placed"
    assert buy.threshold == D("0.0005") and buy.fee_cost == D("0.001") and buy.half_spread == D("0.001")
    assert buy.cost == D("0.002") and buy.best_ask == D(100_100_000)
    order = buy.order
    assert order.source == OrderSource.AUTO and order.mode == "paper" and order.state == OrderState.DONE
    assert order.ord_type == OrdType.PRICE and order.price == D(100_000)
    assert order.idempotency_key == f"auto-{s.pk}-{buy.prediction_ts}"
    assert order.executed_volume > 0
    pos = autotrade.session_position(session=s)
    assert pos.volume == order.executed_volume and pos.cost == order.executed_funds + order.paid_fee
    events = drain(channel)
    kinds = [e["data"]["kind"] for e in events]
    assert "auto_decision" in kinds and "order" in kinds
    pushed = [e["data"]["decision"] for e in events if e["data"]["kind"] == "auto_decision"]
    assert (
        pushed[-1]["action"] == "buy" and pushed[-1]["cost"] == "0.002" and pushed[-1]["order_id"] == order.pk
    )


def test_sell_below_minus_edge_closes_the_sessions_position(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    autotrade_on_prediction.run(prediction=prediction(-0.0025))  # exactly at -edge: hold
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    buy, hold, sell = decisions(s)
    assert (buy.action, hold.action, hold.reason, sell.action) == ("buy", "hold", "below_threshold", "sell")
    assert sell.order.side == Side.ASK and sell.order.state == OrderState.DONE
    assert sell.order.volume == buy.order.executed_volume
    assert autotrade.session_position(session=s).volume == 0
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    assert decisions(s)[-1].reason == "no_position"


def test_redelivered_prediction_places_one_order(user, wide_book, active_models):
    s = start(user)
    p = prediction(0.003)
    autotrade_on_prediction.run(prediction=p)
    autotrade_on_prediction.run(prediction=p)
    assert len(decisions(s)) == 1
    assert Order.objects.filter(user=user, source=OrderSource.AUTO).count() == 1
    older = prediction(0.003, ts=p["ts"] - 5000)  # out of order: not judged at all
    autotrade_on_prediction.run(prediction=older)
    assert len(decisions(s)) == 1


def test_cooldown_between_orders(user, wide_book, active_models):
    s = start(user, cooldown_s=60, max_position_krw=D(500_000))
    for _ in range(3):
        autotrade_on_prediction.run(prediction=prediction(0.003))
    assert [d.reason for d in decisions(s)] == ["signal_buy", "cooldown", "cooldown"]
    AutoTradeSession.objects.filter(pk=s.pk).update(last_order_at=s.started_at.replace(year=2000))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert decisions(s)[-1].reason == "signal_buy"


def test_position_limit_is_never_exceeded(user, wide_book, active_models):
    risk_limits_update(user=user, max_order_krw=None, max_position_krw=D(250_000), daily_loss_limit_krw=None)
    s = start(user, max_position_krw=D(1_000_000))
    for _ in range(4):
        autotrade_on_prediction.run(prediction=prediction(0.003))
    assert [d.action for d in decisions(s)] == ["buy", "buy", "hold", "hold"]
    assert decisions(s)[-1].reason == "position_limit"
    held = autotrade.session_position(session=s).volume * D(99_900_000)
    assert held <= D(250_000)


def test_changed_threshold_takes_effect_on_the_next_prediction(user, wide_book, active_models, api):
    s = start(user, threshold=D("0.001"))  # edge 0.003
    autotrade_on_prediction.run(prediction=prediction(0.0027))
    r = api.put("/api/trading/auto/change/", {"market": "KRW-BTC", "threshold_pct": "0.05"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["session"]["threshold"] == "0.0005"
    autotrade_on_prediction.run(prediction=prediction(0.0027))  # edge now 0.0025
    first, second = decisions(s)
    assert (first.action, first.threshold) == ("hold", D("0.001"))
    assert (second.action, second.threshold) == ("buy", D("0.0005"))


def test_stop_cancels_the_sessions_open_orders_and_ends_trading(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    # A resting order of the session (e.g. a live market order the exchange has not settled yet).
    resting = order_place(
        user=user,
        market="KRW-BTC",
        side=Side.BID,
        ord_type=OrdType.LIMIT,
        price=D(90_000_000),
        volume=D("0.001"),
        idempotency_key=f"auto-{s.pk}-rest",
        source=OrderSource.AUTO,
    )
    assert resting.state == OrderState.OPEN
    AutoTradeDecision.objects.create(
        session=s,
        user=user,
        market="KRW-BTC",
        prediction_ts=1,
        predicted_return=0,
        threshold=0,
        fee_cost=0,
        half_spread=0,
        cost=0,
        action="buy",
        reason="signal_buy",
        outcome="placed",
        order=resting,
    )
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert decisions(s)[-1].reason == "order_in_flight"
    stopped = autotrade.autotrade_stop(user=user, market="KRW-BTC")
    resting.refresh_from_db()
    assert resting.state == OrderState.CANCELLED
    assert stopped.state == AutoTradeState.STOPPED and stopped.running_key is None
    n = len(decisions(s))
    assert autotrade_on_prediction.run(prediction=prediction(0.003)) == 0
    assert len(decisions(s)) == n
    start(user)  # a new session can start once the old one stopped


def test_many_users_are_isolated(wide_book, active_models):
    a, b, c = UserFactory(), UserFactory(), UserFactory()
    sa = start(a, threshold=D("0.0005"))
    sb = start(b, threshold=D("0.002"))  # edge 0.004
    sc = start(c, market="KRW-ETH")
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert [d.action for d in decisions(sa)] == ["buy"]
    assert [d.action for d in decisions(sb)] == ["hold"]
    assert decisions(sc) == []  # another market's prediction
    assert Order.objects.filter(user=b).count() == 0 and Order.objects.filter(user=a).count() == 1
    assert list(autotrade.autotrade_decisions_list(user=b).values_list("session_id", flat=True)) == [sb.pk]
    from core.errors import NotFound

    with pytest.raises(NotFound):
        autotrade.autotrade_stop(user=b, session_id=sa.pk)
    # One user's broken session does not stop the others.
    AutoTradeSession.objects.filter(pk=sb.pk).update(order_krw=D("-1"), threshold=D("-1"))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert len(decisions(sa)) == 2


def test_halt_and_kill_switch_stop_sessions(user, other_user, wide_book, active_models):
    s1 = start(user)
    s2 = start(other_user)
    auto_trading_halt(user=user, reason="Daily loss limit reached")
    s1.refresh_from_db()
    s2.refresh_from_db()
    assert s1.state == "stopped" and "Daily loss" in s1.stop_reason and s2.state == "running"
    s1 = start(user)  # starting again acknowledges the halt
    kill_switch_engage(reason="test")
    assert not AutoTradeSession.objects.filter(state="running").exists()
    from trading.errors import TradingHalted

    with pytest.raises(TradingHalted):
        start(user)


def test_old_hold_decisions_are_pruned_but_trades_are_kept(user, wide_book, active_models):
    import datetime as dt

    from django.utils import timezone

    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    autotrade_on_prediction.run(prediction=prediction(0.0))
    AutoTradeDecision.objects.filter(session=s).update(created_at=timezone.now() - dt.timedelta(days=8))
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert autotrade.autotrade_decisions_prune() == 1
    assert [d.action for d in decisions(s)] == ["buy", "hold"]


def test_sell_never_exceeds_what_the_account_still_holds(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    bought = decisions(s)[0].order.executed_volume
    half = (bought / 2).quantize(D("0.00000001"))
    manual = order_place(user=user, market="KRW-BTC", side=Side.ASK, ord_type=OrdType.MARKET, volume=half)
    assert manual.state == OrderState.DONE
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    sell = decisions(s)[-1]
    assert sell.action == "sell" and sell.outcome == "placed", sell.detail
    assert sell.order.volume == bought - half and "only" in sell.detail
