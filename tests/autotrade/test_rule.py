"""The threshold rule with hand-computed costs (both fees + half-spread), cool-down, limits, stop."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from autotrade.models import AutoTradeSession
from autotrade.rule import Costs, SessionPosition, decide
from autotrade.services import round_trip_cost, spread_cost_factor
from trading.models import TradingProfile

D = Decimal
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FLAT = SessionPosition(volume=D(0), cost=D(0), open_orders=0)
MIN_ORDER_KRW = D(5000)  # Upbit's minimum order (settings.UPBIT_MIN_ORDER_KRW)


def costs() -> Costs:
    # mid 100,000,000; spread 200,000 -> half-spread 100,000 / 100,000,000 = 0.001; fees 2 x 0.0005 = 0.001
    return round_trip_cost(best_bid=D(99_900_000), best_ask=D(100_100_000), fee_rate=D("0.0005"))


def session(**kw) -> AutoTradeSession:  # noqa: ANN003
    base = {
        "market": "KRW-BTC",
        "mode": "paper",
        "threshold": D("0.0005"),
        "order_krw": D(100_000),
        "cooldown_s": 10,
    }
    return AutoTradeSession(**{**base, **kw})


def run(
    pred: str,
    *,
    s: AutoTradeSession | None = None,
    pos: SessionPosition = FLAT,
    profile: TradingProfile | None = None,
    now: dt.datetime = NOW,
    kill: bool = False,
) -> tuple[str, str]:
    action, reason, _detail = decide(
        session=s or session(),
        profile=profile,
        predicted_return=D(pred),
        costs=costs(),
        position=pos,
        now=now,
        kill_switch=kill,
        min_order_krw=MIN_ORDER_KRW,
    )
    return action, reason


def test_cost_is_both_fees_plus_half_spread():
    c = costs()
    assert c.fee_cost == D("0.0010000000")
    assert c.half_spread == D("0.0010000000")
    assert c.total == D("0.0020000000")
    # A one-tick book: 1,000 / 2 / 99,999,500 = 0.0000050000 (rounded to 1e-10).
    narrow = round_trip_cost(best_bid=D(99_999_000), best_ask=D(100_000_000), fee_rate=D("0.0005"))
    assert narrow.half_spread == D("0.0000050000") and narrow.total == D("0.0010050000")


def test_spread_cost_factor_defaults_to_the_half_spread(settings):
    assert settings.AUTOTRADE_SPREAD_COST_FACTOR == "0.5" and spread_cost_factor() == D("0.5")
    c = round_trip_cost(best_bid=D(99_900_000), best_ask=D(100_100_000), fee_rate=D("0.0005"))
    assert c.half_spread == D("0.001") and c.total == D("0.002")  # 0.5 x 200,000 / 100,000,000


def test_spread_cost_factor_one_counts_the_full_spread(settings):
    settings.AUTOTRADE_SPREAD_COST_FACTOR = "1.0"
    c = round_trip_cost(best_bid=D(99_900_000), best_ask=D(100_100_000), fee_rate=D("0.0005"))
    # 1.0 x 200,000 / 100,000,000 = 0.002 (still stored as "half_spread"); + fees 0.001
    assert c.half_spread == D("0.0020000000") and c.total == D("0.0030000000")
    action, reason, _detail = decide(
        session=session(),
        profile=None,
        predicted_return=D("0.0035"),  # edge = 0.0005 + 0.003: exactly at it, no trade
        costs=c,
        position=FLAT,
        now=NOW,
        kill_switch=False,
        min_order_krw=MIN_ORDER_KRW,
    )
    assert (action, reason) == ("hold", "below_threshold")
    explicit = round_trip_cost(
        best_bid=D(99_999_000), best_ask=D(100_000_000), fee_rate=D("0.0005"), spread_factor=D(0)
    )
    assert explicit.half_spread == 0 and explicit.total == D("0.001")


@pytest.mark.parametrize("bad", ["-0.1", "2.01", "abc", "", "NaN", "Infinity"])
def test_spread_cost_factor_out_of_range_is_a_configuration_error(settings, bad):
    from django.apps import apps

    settings.AUTOTRADE_SPREAD_COST_FACTOR = bad
    with pytest.raises(ImproperlyConfigured, match="AUTOTRADE_SPREAD_COST_FACTOR"):
        round_trip_cost(best_bid=D(99_900_000), best_ask=D(100_100_000))
    with pytest.raises(ImproperlyConfigured, match="AUTOTRADE_SPREAD_COST_FACTOR"):
        apps.get_app_config("autotrade").ready()  # what every process runs at start-up
    for good in ("0", "1.0", "2"):
        settings.AUTOTRADE_SPREAD_COST_FACTOR = good
        apps.get_app_config("autotrade").ready()


def test_buy_only_strictly_above_threshold_plus_cost():
    # edge = 0.0005 + 0.002 = 0.0025
    assert run("0.0025") == ("hold", "below_threshold")  # exactly at the edge: no trade
    assert run("0.0024999999") == ("hold", "below_threshold")
    assert run("0.0025000001") == ("buy", "signal_buy")
    assert run("0.0020") == ("hold", "below_threshold")  # above the fees alone is not enough


def test_sell_only_below_minus_edge_and_only_with_a_position():
    pos = SessionPosition(volume=D("0.001"), cost=D(100_100), open_orders=0)
    assert run("-0.0025", pos=pos) == ("hold", "below_threshold")
    assert run("-0.0025000001", pos=pos) == ("sell", "signal_sell")
    assert run("-0.01") == ("hold", "no_position")
    dust = SessionPosition(volume=D("0.00001"), cost=D(1000), open_orders=0)  # 999 KRW < 5,000 minimum
    assert run("-0.01", pos=dust) == ("hold", "under_min_total")


def test_cooldown_blocks_new_orders_until_it_has_passed():
    s = session(last_order_at=NOW - dt.timedelta(seconds=5), max_position_krw=D(1_000_000))
    assert run("0.01", s=s) == ("hold", "cooldown")
    assert run("0.01", s=s, now=NOW + dt.timedelta(seconds=5)) == ("buy", "signal_buy")
    pos = SessionPosition(volume=D("0.001"), cost=D(100_100), open_orders=0)
    assert run("-0.01", s=s, pos=pos) == ("hold", "cooldown")


def test_never_above_the_position_limit():
    one = SessionPosition(volume=D("0.001"), cost=D(100_100), open_orders=0)  # ~99,900 KRW at the bid
    assert run("0.01", pos=one) == ("hold", "position_limit")  # default limit: one order
    assert run("0.01", pos=one, s=session(max_position_krw=D(200_000))) == ("buy", "signal_buy")
    # The user's profile limit caps the session's own limit.
    profile = TradingProfile(max_position_krw=D(150_000))
    assert run("0.01", pos=one, s=session(max_position_krw=D(1_000_000)), profile=profile) == (
        "hold",
        "position_limit",
    )


def test_stop_loss_sells_regardless_of_the_prediction_and_the_cooldown():
    pos = SessionPosition(volume=D("0.001"), cost=D(105_000), open_orders=0)  # avg cost 105,000,000
    s = session(stop_loss=D("0.04"), last_order_at=NOW)  # stop at 100,800,000 > bid 99,900,000
    assert run("0.01", s=s, pos=pos) == ("sell", "stop_loss")
    assert run("0.01", s=session(stop_loss=D("0.10"), last_order_at=NOW), pos=pos) == (
        "hold",
        "position_limit",
    )


def test_halt_kill_switch_and_orders_in_flight_stop_everything():
    assert run("0.01", kill=True) == ("hold", "kill_switch")
    assert run("0.01", profile=TradingProfile(auto_trading_halted=True)) == ("hold", "halted")
    busy = SessionPosition(volume=D(0), cost=D(0), open_orders=1)
    assert run("0.01", pos=busy) == ("hold", "order_in_flight")


def test_a_position_held_past_the_horizon_is_sold_once_the_model_would_not_buy_it_now():
    # edge = 0.0005 + 0.002 = 0.0025; the prediction's horizon is 10 s; the lot was bought 10 s ago.
    pos = SessionPosition(
        volume=D("0.001"), cost=D(100_100), open_orders=0, opened_at=NOW - dt.timedelta(seconds=10)
    )

    def at(pred: str, *, horizon: float | None = 10.0, p: SessionPosition = pos) -> tuple[str, str]:
        action, reason, _detail = decide(
            session=session(),
            profile=None,
            predicted_return=D(pred),
            costs=costs(),
            position=p,
            now=NOW,
            kill_switch=False,
            min_order_krw=MIN_ORDER_KRW,
            horizon_s=horizon,
        )
        return action, reason

    assert at("0.0025") == ("sell", "horizon_exit")  # at the edge: the model would not buy it now
    assert at("0") == ("sell", "horizon_exit")
    assert at("0.0025000001") == ("hold", "position_limit")  # still a buy: keep the lot
    assert at("-0.0025000001") == ("sell", "signal_sell")
    assert at("0", horizon=None) == ("hold", "below_threshold")  # no horizon: only the sell signal
    young = SessionPosition(
        volume=D("0.001"), cost=D(100_100), open_orders=0, opened_at=NOW - dt.timedelta(seconds=9)
    )
    assert at("0", p=young) == ("hold", "below_threshold")  # bought 9 s ago: the 10-s move is not over
