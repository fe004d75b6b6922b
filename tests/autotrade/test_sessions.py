"""Auto-trading sessions against the paper exchange (filled on the simulator's live book)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from autotrade import selectors, services
from autotrade.models import AutoTradeDecision, AutoTradeSession, AutoTradeState
from autotrade.tasks import autotrade_on_prediction
from tests.accounts.factories import UserFactory
from tests.autotrade.conftest import prediction
from trading.models import Order, OrderSource, OrderState, OrdType, Side
from trading.services import kill_switch_engage, order_place
from trading.services.profiles import auto_trading_halt, risk_limits_update

pytestmark = pytest.mark.django_db
D = Decimal


def bare_decision(session, **fields):  # noqa: ANN001, ANN003, ANN201
    """A decision row with zero figures (the tests only need its action, outcome and order)."""
    zero = {k: 0 for k in ("predicted_return", "threshold", "fee_cost", "half_spread", "cost")}
    return AutoTradeDecision.objects.create(
        session=session, user=session.user, market=session.market, prediction_ts=1, **zero, **fields
    )


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
    return services.autotrade_start(user=user, **{**params, **kw})


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
    pos = selectors.session_position(session=s)
    assert pos.volume == order.executed_volume and pos.cost == order.executed_funds + order.paid_fee
    events = drain(channel)
    kinds = [e["data"]["kind"] for e in events]
    assert "auto_decision" in kinds and "order" in kinds
    pushed = [e["data"]["decision"] for e in events if e["data"]["kind"] == "auto_decision"]
    assert (
        pushed[-1]["action"] == "buy" and pushed[-1]["cost"] == "0.002" and pushed[-1]["order_id"] == order.pk
    )


def test_full_spread_cost_factor_raises_the_edge_and_is_logged(user, wide_book, active_models, settings):
    settings.AUTOTRADE_SPREAD_COST_FACTOR = "1.0"  # edge = 0.0005 + 0.001 fees + 0.002 spread = 0.0035
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))  # a buy under the default factor
    autotrade_on_prediction.run(prediction=prediction(0.0036))
    hold, buy = decisions(s)
    assert (hold.action, hold.reason) == ("hold", "below_threshold")
    assert hold.half_spread == D("0.002") and hold.cost == D("0.003") and hold.fee_cost == D("0.001")
    assert buy.action == "buy" and buy.outcome == "placed"
    assert selectors.decision_data(decision=buy)["half_spread"] == "0.002"


def test_sell_below_minus_edge_closes_the_sessions_position(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    autotrade_on_prediction.run(prediction=prediction(-0.0025))  # exactly at -edge: hold
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    buy, hold, sell = decisions(s)
    assert (buy.action, hold.action, hold.reason, sell.action) == ("buy", "hold", "below_threshold", "sell")
    assert sell.order.side == Side.ASK and sell.order.state == OrderState.DONE
    assert sell.order.volume == buy.order.executed_volume
    assert selectors.session_position(session=s).volume == 0
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
    held = selectors.session_position(session=s).volume * D(99_900_000)
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
    bare_decision(s, action="buy", reason="signal_buy", outcome="placed", order=resting)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert decisions(s)[-1].reason == "order_in_flight"
    stopped = services.autotrade_stop(user=user, market="KRW-BTC")
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
    assert list(selectors.autotrade_decisions_list(user=b).values_list("session_id", flat=True)) == [sb.pk]
    from core.errors import NotFound

    with pytest.raises(NotFound):
        services.autotrade_stop(user=b, session_id=sa.pk)
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
    # Still a buy signal, so the 8-day-old lot is kept (a flat prediction would sell it: horizon passed).
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert services.autotrade_decisions_prune() == 1
    assert [d.action for d in decisions(s)] == ["buy", "hold"]


def manual(user: Any, side: str, volume: Any = None, price: Any = None) -> Order:
    """A trade the user places by hand (order service, source manual) on the session's coin."""
    if side == Side.ASK:
        o = order_place(user=user, market="KRW-BTC", side=Side.ASK, ord_type=OrdType.MARKET, volume=volume)
    else:
        o = order_place(user=user, market="KRW-BTC", side=Side.BID, ord_type=OrdType.PRICE, price=price)
    assert o.state == OrderState.DONE and o.source == OrderSource.MANUAL
    return o


def test_manual_sale_cuts_the_sessions_position_and_its_sell(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    buy = decisions(s)[0].order
    bought, paid = buy.executed_volume, buy.executed_funds + buy.paid_fee
    half = (bought / 2).quantize(D("0.00000001"))
    manual(user, Side.ASK, volume=half)
    assert selectors.session_position(session=s).volume == bought  # nothing recorded until it is judged
    autotrade_on_prediction.run(prediction=prediction(0.0))  # the next prediction sees the account
    hold = decisions(s)[-1]
    assert (hold.action, hold.reason) == ("hold", "below_threshold")
    assert hold.manual_adjust_volume == half and "position reduced by a manual trade" in hold.detail
    pos = selectors.session_position(session=s)
    assert pos.volume == bought - half and pos.manual_reduced == half
    assert pos.avg_cost == paid / bought  # the remaining units keep the session's own cost basis
    shown = selectors.session_data(session=s)["position"]
    assert shown["manual_reduced_volume"] == format(half.normalize(), "f")
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    sell = decisions(s)[-1]
    assert (sell.action, sell.outcome, sell.manual_adjust_volume) == ("sell", "placed", None)
    assert sell.volume == bought - half and sell.order.volume == bought - half
    assert "only" not in sell.detail  # sized right from the start, not capped at the exchange
    assert selectors.session_position(session=s).volume == 0


def test_manual_sale_judged_on_the_sell_signal_itself(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    bought = decisions(s)[0].order.executed_volume
    third = (bought / 3).quantize(D("0.00000001"))
    manual(user, Side.ASK, volume=third)
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    sell = decisions(s)[-1]
    assert sell.action == "sell" and sell.manual_adjust_volume == third
    assert sell.order.volume == bought - third and sell.order.state == OrderState.DONE
    assert selectors.session_position(session=s).volume == 0


def test_position_limit_uses_the_position_left_after_a_manual_sale(user, wide_book, active_models):
    s = start(user, max_position_krw=D(150_000))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    assert [d.reason for d in decisions(s)] == ["signal_buy", "position_limit"]  # ~99,800 + 100,000 > 150,000
    bought = decisions(s)[0].order.executed_volume
    manual(user, Side.ASK, volume=(bought / 2).quantize(D("0.00000001")))
    autotrade_on_prediction.run(prediction=prediction(0.003))  # ~49,900 + 100,000 <= 150,000
    last = decisions(s)[-1]
    assert (last.action, last.reason) == ("buy", "signal_buy") and last.manual_adjust_volume is not None
    held = selectors.session_position(session=s).volume * D(99_900_000)
    assert held <= D(150_000)


def test_manual_sale_of_everything_leaves_no_position(user, wide_book, active_models):
    s = start(user, stop_loss=D("0.5"))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    manual(user, Side.ASK, volume=decisions(s)[0].order.executed_volume)
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    last = decisions(s)[-1]
    assert (last.action, last.reason) == ("hold", "no_position") and last.order_id is None
    pos = selectors.session_position(session=s)
    assert (pos.volume, pos.cost, pos.avg_cost) == (0, 0, None)
    autotrade_on_prediction.run(prediction=prediction(0.003))  # a fresh buy has only its own cost
    new = decisions(s)[-1].order
    pos = selectors.session_position(session=s)
    assert pos.volume == new.executed_volume and pos.cost == new.executed_funds + new.paid_fee


def test_manual_buys_never_grow_the_sessions_position(user, wide_book, active_models):
    s = start(user, max_position_krw=D(1_000_000))
    autotrade_on_prediction.run(prediction=prediction(0.003))
    bought = decisions(s)[0].order.executed_volume
    mine = manual(user, Side.BID, price=D(300_000)).executed_volume  # the user's own coin
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume is None
    assert selectors.session_position(session=s).volume == bought
    # Sold some, then bought more than that back: the cut stays, the buy is the user's.
    half = (bought / 2).quantize(D("0.00000001"))
    manual(user, Side.ASK, volume=mine + half)
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume == half
    manual(user, Side.BID, price=D(500_000))
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume is None
    assert selectors.session_position(session=s).volume == bought - half
    autotrade_on_prediction.run(prediction=prediction(-0.003))
    sell = decisions(s)[-1]
    assert sell.action == "sell" and sell.order.volume == bought - half


def test_no_cut_while_an_order_of_the_session_is_being_placed(user, wide_book, active_models):
    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    bought = decisions(s)[0].order.executed_volume
    half = (bought / 2).quantize(D("0.00000001"))
    manual(user, Side.ASK, volume=half)
    # A decision whose order is still on its way: the balance may already show a fill the rows do not.
    bare_decision(s, action="sell", reason="signal_sell", outcome="pending", idempotency_key="in-flight")
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume is None
    assert selectors.session_position(session=s).volume == bought
    AutoTradeDecision.objects.filter(idempotency_key="in-flight").update(outcome="rejected")
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume == half


def test_pruning_keeps_the_holds_that_cut_the_position(user, wide_book, active_models):
    import datetime as dt

    from django.utils import timezone

    s = start(user)
    autotrade_on_prediction.run(prediction=prediction(0.003))
    bought = decisions(s)[0].order.executed_volume
    half = (bought / 2).quantize(D("0.00000001"))
    manual(user, Side.ASK, volume=half)
    autotrade_on_prediction.run(prediction=prediction(0.0))  # the cut
    autotrade_on_prediction.run(prediction=prediction(0.0))  # a plain hold
    AutoTradeDecision.objects.filter(session=s).update(created_at=timezone.now() - dt.timedelta(days=8))
    assert services.autotrade_decisions_prune() == 1
    assert selectors.session_position(session=s).volume == bought - half


def test_live_session_is_cut_to_the_exchange_balance_not_a_stale_cache(live_user, wide_book, active_models):
    from django.core.cache import cache

    from trading.cache_keys import live_balances_cache_key
    from trading.exchanges.base import Balance

    s = start(live_user)
    assert s.mode == "live"
    autotrade_on_prediction.run(prediction=prediction(0.003))
    buy = decisions(s)[0].order
    assert buy.mode == "live" and buy.state == OrderState.DONE, buy.state
    bought = buy.executed_volume
    # A cached snapshot from before the fill must not read as a manual sale: it is confirmed first.
    stale = [Balance(currency="BTC", balance=D(0), locked=D(0), avg_buy_price=D(0))]
    cache.set(live_balances_cache_key(live_user.pk), stale, 60)
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume is None
    assert selectors.session_position(session=s).volume == bought
    # The user's own 1 BTC goes first; only what is sold beyond it comes off the session.
    half = (bought / 2).quantize(D("0.00000001"))
    sold = order_place(
        user=live_user, market="KRW-BTC", side=Side.ASK, ord_type=OrdType.MARKET, volume=1 + half
    )
    assert sold.state == OrderState.DONE, sold.state
    autotrade_on_prediction.run(prediction=prediction(0.0))
    assert decisions(s)[-1].manual_adjust_volume == half
    assert selectors.session_position(session=s).volume == bought - half


def test_a_stale_prediction_is_dropped_and_only_a_lag_now_warns(user, wide_book, active_models, caplog):
    """A prediction that waited past MAX_PREDICTION_AGE_S is not traded on. One a minute old means the queue
    lags now (warning); one queued before the workers last stopped, drained at start-up, is an info line (the
    console of a restarted stack stays quiet)."""
    import logging
    import re
    import time

    s = start(user)
    caplog.set_level(logging.INFO, logger="autotrade.services")
    lagging = prediction(0.01, published_at=time.time() - 60)
    backlog = prediction(0.01, published_at=time.time() - 3 * 3600)
    assert autotrade_on_prediction.run(prediction=lagging) == 0
    assert autotrade_on_prediction.run(prediction=backlog) == 0
    assert not decisions(s)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if "stale prediction" in r.getMessage()]
    assert [lvl for lvl, _ in levels] == ["WARNING", "INFO"]
    assert re.search(r"published 6\d s ago", levels[0][1])
    assert re.search(r"published 108\d\d s ago", levels[1][1])
