"""Matching engine: fills, fees, locks and rejections computed by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from market.upbit.protocol import UpbitError
from market.upbit_sim.engine import Execution, MatchingEngine, OrderEvent

M = "KRW-BTC"
ASKS = [(100_000_000.0, 0.5), (100_001_000.0, 1.0)]
BIDS = [(99_999_000.0, 0.3), (99_998_000.0, 1.0)]


@pytest.fixture
def eng() -> MatchingEngine:
    e = MatchingEngine([M, "KRW-ETH"], clock=lambda: 1_751_608_800_000)
    e.on_book(M, ASKS, BIDS, 1_751_608_800_000)
    return e


def _acct(e: MatchingEngine, krw: str = "100000000", btc: str = "0") -> str:
    return e.account_create(krw=D(krw), assets={"BTC": D(btc)}).account_id


def _bal(e: MatchingEngine, acc: str, cur: str) -> tuple[D, D]:
    b = e.accounts[acc].balances[cur]
    return b.balance, b.locked


def test_marketable_limit_bid_walks_two_levels_with_fee_and_refund(eng: MatchingEngine) -> None:
    a = _acct(eng)
    o = eng.order_create(
        account_id=a, market=M, side="bid", ord_type="limit", price="100001000", volume="0.7"
    )
    # 0.5 @ 100,000,000 + 0.2 @ 100,001,000
    assert [(t.price, t.volume) for t in o.trades] == [(D("100000000"), D("0.5")), (D("100001000"), D("0.2"))]
    assert o.state == "done"
    assert o.executed_funds == D("70000200")
    assert o.paid_fee == D("35000.1")
    # reserved at entry: 100,001,000 * 0.7 * 0.0005
    assert o.reserved_fee == D("35000.35")
    assert o.locked == 0 and o.remaining_fee == 0
    # KRW paid = funds + fee; the better price on the first level is refunded.
    assert _bal(eng, a, "KRW") == (D("100000000") - D("70000200") - D("35000.1"), 0)
    assert _bal(eng, a, "BTC") == (D("0.7"), 0)
    assert eng.accounts[a].balances["BTC"].avg_buy_price == D("100000285.71428571")
    w = o.wire(with_trades=True)
    assert w["state"] == "done" and w["executed_volume"] == "0.7" and w["trades_count"] == 2
    assert w["trades"][0] == {
        "market": M,
        "uuid": o.trades[0].uuid,
        "price": "100000000",
        "volume": "0.5",
        "funds": "50000000",
        "trend": "up",
        "created_at": "2025-07-04T15:00:00.000000+09:00",
        "side": "bid",
    }


def test_partial_fill_rests_then_cancel_releases_the_lock(eng: MatchingEngine) -> None:
    a = _acct(eng, krw="200000000")
    o = eng.order_create(account_id=a, market=M, side="bid", ord_type="limit", price="100000000", volume="1")
    assert o.state == "wait"
    assert o.executed_volume == D("0.5") and o.remaining_volume == D("0.5")
    # Still held for the rest: 0.5 * 100,000,000 * 1.0005
    assert o.locked == D("50025000")
    assert _bal(eng, a, "KRW") == (D("99950000"), D("50025000"))
    wire = o.wire()
    assert wire["locked"] == "50025000" and wire["remaining_fee"] == "25000" and wire["paid_fee"] == "25000"
    snap = eng.order_cancel(account_id=a, uuid=o.uuid)
    assert snap["state"] == "wait"  # the pre-cancel snapshot, like Upbit's DELETE /order
    assert o.state == "cancel"
    assert _bal(eng, a, "KRW") == (D("149975000"), 0)
    assert _bal(eng, a, "BTC") == (D("0.5"), 0)
    with pytest.raises(UpbitError) as exc:
        eng.order_cancel(account_id=a, uuid=o.uuid)
    assert exc.value.name == "order_not_found"


def test_price_time_priority_between_resting_user_orders(eng: MatchingEngine) -> None:
    eng.on_book(M, [], BIDS, 1)  # no source asks: only user orders on the ask side
    s1, s2, s3 = (_acct(eng, btc="1") for _ in range(3))
    o1 = eng.order_create(
        account_id=s1, market=M, side="ask", ord_type="limit", price="100002000", volume="0.1"
    )
    o2 = eng.order_create(
        account_id=s2, market=M, side="ask", ord_type="limit", price="100002000", volume="0.1"
    )
    o3 = eng.order_create(
        account_id=s3, market=M, side="ask", ord_type="limit", price="100001000", volume="0.1"
    )
    buyer = _acct(eng)
    seen: list[Execution] = []
    eng.listeners.append(lambda ev: seen.append(ev) if isinstance(ev, Execution) else None)
    b = eng.order_create(
        account_id=buyer, market=M, side="bid", ord_type="limit", price="100002000", volume="0.15"
    )
    # Better price first (o3), then the earlier of the two at 100,002,000 (o1).
    assert [(t.price, t.volume) for t in b.trades] == [
        (D("100001000"), D("0.1")),
        (D("100002000"), D("0.05")),
    ]
    assert (o3.state, o1.state, o2.state) == ("done", "wait", "wait")
    assert o1.remaining_volume == D("0.05") and o2.remaining_volume == D("0.1")
    assert o3.trades[0].is_maker and not b.trades[0].is_maker
    # The seller of o3 receives funds minus the 0.05 % fee: 10,000,100 - 5,000.05
    assert _bal(eng, s3, "KRW") == (D("100000000") + D("10000100") - D("5000.05"), 0)
    assert _bal(eng, s3, "BTC") == (D("0.9"), 0)
    assert [(e.price, e.volume, e.ask_bid) for e in seen] == [
        (100001000.0, 0.1, "BID"),
        (100002000.0, 0.05, "BID"),
    ]
    # The public book shows the resting user orders.
    asks, _, _ = eng.book_levels(M)
    assert asks == [(100002000.0, 0.15)]


def test_market_buy_by_krw_total_closes_cancel_with_dust(eng: MatchingEngine) -> None:
    eng.on_book(M, [(100_000_000.0, 0.0001), (100_001_000.0, 1.0)], BIDS, 1)
    a = _acct(eng, krw="100000")
    o = eng.order_create(account_id=a, market=M, side="bid", ord_type="price", price="20000")
    assert o.volume is None and o.reserved_fee == D("10")
    # 0.0001 @ 100,000,000 = 10,000; then floor8(10,000 / 100,001,000) = 0.00009999 -> 9,999.09999
    assert [(t.price, t.volume) for t in o.trades] == [
        (D("100000000"), D("0.0001")),
        (D("100001000"), D("0.00009999")),
    ]
    assert o.executed_funds == D("19999.09999")
    assert o.paid_fee == D("9.999549995")
    assert o.state == "cancel"  # 0.90001 KRW of dust could not buy 1e-8 BTC
    assert _bal(eng, a, "KRW") == (D("100000") - D("19999.09999") - D("9.999549995"), 0)
    assert _bal(eng, a, "BTC") == (D("0.00019999"), 0)
    w = o.wire()
    assert w["ord_type"] == "price" and w["price"] == "20000" and w["volume"] is None and w["locked"] == "0"


def test_market_buy_exact_fill_is_done(eng: MatchingEngine) -> None:
    a = _acct(eng)
    o = eng.order_create(account_id=a, market=M, side="bid", ord_type="price", price="10000")
    assert o.executed_volume == D("0.0001") and o.state == "done"


def test_market_sell_by_volume(eng: MatchingEngine) -> None:
    a = _acct(eng, krw="0", btc="1")
    o = eng.order_create(account_id=a, market=M, side="ask", ord_type="market", volume="0.5")
    assert [(t.price, t.volume) for t in o.trades] == [(D("99999000"), D("0.3")), (D("99998000"), D("0.2"))]
    assert o.state == "done" and o.executed_funds == D("49999300") and o.paid_fee == D("24999.65")
    assert _bal(eng, a, "KRW") == (D("49974300.35"), 0)
    assert _bal(eng, a, "BTC") == (D("0.5"), 0)
    # The liquidity is gone for the next order until the source sends a new book.
    _, bids, _ = eng.book_levels(M)
    assert bids[0] == (99998000.0, pytest.approx(0.8))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"side": "bid", "ord_type": "limit", "price": "100000500", "volume": "0.01"}, "invalid_price_bid"),
        ({"side": "ask", "ord_type": "limit", "price": "100000500", "volume": "0.01"}, "invalid_price_ask"),
        (
            {"side": "bid", "ord_type": "limit", "price": "100000000", "volume": "0.00004"},
            "under_min_total_bid",
        ),
        (
            {"side": "ask", "ord_type": "limit", "price": "100000000", "volume": "0.00004"},
            "under_min_total_ask",
        ),
        ({"side": "bid", "ord_type": "price", "price": "4999"}, "under_min_total_bid"),
        ({"side": "ask", "ord_type": "market", "volume": "0.00004"}, "under_min_total_ask"),
        ({"side": "bid", "ord_type": "limit", "price": "100000000", "volume": "11"}, "over_krw_funds_bid"),
        ({"side": "bid", "ord_type": "limit", "price": "100000000", "volume": "2"}, "insufficient_funds_bid"),
        ({"side": "ask", "ord_type": "limit", "price": "100000000", "volume": "2"}, "insufficient_funds_ask"),
        ({"side": "ask", "ord_type": "market", "volume": "0.1", "price": "1"}, "create_ask_error"),
        ({"side": "bid", "ord_type": "price", "price": "10000", "volume": "0.1"}, "create_bid_error"),
        ({"side": "ask", "ord_type": "price", "price": "10000"}, "create_ask_error"),
        ({"side": "bid", "ord_type": "price", "price": "1000000001"}, "over_krw_funds_bid"),
        ({"side": "bid", "ord_type": "price", "price": "200000000"}, "create_bid_error"),  # beyond the book
        ({"side": "buy", "ord_type": "limit", "price": "1", "volume": "1"}, "validation_error"),
        ({"side": "bid", "ord_type": "stop", "price": "1", "volume": "1"}, "validation_error"),
        ({"side": "bid", "ord_type": "limit", "volume": "1"}, "validation_error"),
        (
            {"side": "bid", "ord_type": "limit", "price": "100000000", "volume": "0.000000001"},
            "validation_error",
        ),
        ({"side": "bid", "ord_type": "limit", "price": "-1", "volume": "1"}, "validation_error"),
        ({"side": "bid", "ord_type": "best", "price": "10000"}, "invalid_time_in_force"),
        (
            {
                "side": "bid",
                "ord_type": "limit",
                "price": "100000000",
                "volume": "0.01",
                "time_in_force": "gtc",
            },
            "invalid_time_in_force",
        ),
        (
            {"market": "KRW-NOPE", "side": "bid", "ord_type": "limit", "price": "1000", "volume": "10"},
            "notfoundmarket",
        ),
    ],
)
def test_rejections_use_upbit_error_names(eng: MatchingEngine, kwargs: dict, name: str) -> None:
    a = _acct(eng, krw="150000000", btc="1")
    args = {"market": M, **kwargs}
    with pytest.raises(UpbitError) as exc:
        eng.order_create(account_id=a, **args)
    assert exc.value.name == name
    assert exc.value.status == 400
    # Nothing was held by a rejected order.
    assert _bal(eng, a, "KRW") == (D("150000000"), 0)
    assert _bal(eng, a, "BTC") == (D("1"), 0)


def test_identifier_is_unique_forever_per_account(eng: MatchingEngine) -> None:
    a, b = _acct(eng), _acct(eng)
    with pytest.raises(UpbitError):  # fails on min total, but the identifier is used up anyway
        eng.order_create(
            account_id=a, market=M, side="bid", ord_type="limit", price="1000", volume="1", identifier="cli-1"
        )
    with pytest.raises(UpbitError) as exc:
        eng.order_create(
            account_id=a,
            market=M,
            side="bid",
            ord_type="limit",
            price="99000000",
            volume="0.001",
            identifier="cli-1",
        )
    assert exc.value.name == "duplicate_identifier"
    # Another account may use the same identifier.
    o = eng.order_create(
        account_id=b,
        market=M,
        side="bid",
        ord_type="limit",
        price="99000000",
        volume="0.001",
        identifier="cli-1",
    )
    assert eng.order_get(account_id=b, identifier="cli-1") is o
    with pytest.raises(UpbitError) as nf:
        eng.order_get(account_id=a, identifier="cli-1")
    assert nf.value.name == "order_not_found"
    with pytest.raises(UpbitError) as other:  # orders are scoped to their owner
        eng.order_get(account_id=a, uuid=o.uuid)
    assert other.value.name == "order_not_found"


def test_resting_bid_fills_after_the_queue_ahead_and_when_traded_through(eng: MatchingEngine) -> None:
    a = _acct(eng)
    o = eng.order_create(account_id=a, market=M, side="bid", ord_type="limit", price="99999000", volume="0.1")
    assert o.state == "wait" and o.queue_ahead == pytest.approx(0.3)
    eng.on_trade(M, 99_999_000.0, 0.35, "ASK", 2)  # eats 0.3 of queue ahead, 0.05 reaches us
    assert o.executed_volume == D("0.05") and o.trades[0].is_maker
    eng.on_trade(M, 99_998_000.0, 0.01, "ASK", 3)  # a trade below our price: we were filled first
    assert o.state == "done" and o.executed_volume == D("0.1")
    assert all(t.price == D("99999000") for t in o.trades)
    assert _bal(eng, a, "BTC") == (D("0.1"), 0)
    assert _bal(eng, a, "KRW") == (D("100000000") - D("9999900") - D("4999.95"), 0)


def test_buyer_initiated_trades_do_not_fill_resting_bids(eng: MatchingEngine) -> None:
    a = _acct(eng)
    o = eng.order_create(account_id=a, market=M, side="bid", ord_type="limit", price="99999000", volume="0.1")
    eng.on_trade(M, 99_999_000.0, 5.0, "BID", 2)
    assert o.executed_volume == 0


def test_resting_ask_fills_when_the_book_moves_across_it(eng: MatchingEngine) -> None:
    a = _acct(eng, btc="1")
    o = eng.order_create(
        account_id=a, market=M, side="ask", ord_type="limit", price="100005000", volume="0.05"
    )
    assert o.state == "wait"
    eng.on_book(
        M, [(100_007_000.0, 1.0)], [(100_006_000.0, 0.02), (100_005_000.0, 0.01), (100_004_000.0, 9.0)], 5
    )
    assert o.executed_volume == D("0.03") and o.trades[0].price == D("100005000")
    assert o.state == "wait" and o.remaining_volume == D("0.02")


def test_time_in_force_ioc_fok_post_only(eng: MatchingEngine) -> None:
    a = _acct(eng, krw="500000000")
    ioc = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="100000000",
        volume="0.8",
        time_in_force="ioc",
    )
    assert ioc.executed_volume == D("0.5") and ioc.state == "cancel" and ioc.locked == 0
    eng.on_book(M, ASKS, BIDS, 2)
    fok = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="100000000",
        volume="0.8",
        time_in_force="fok",
    )
    assert fok.executed_volume == 0 and fok.state == "cancel"
    post = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="100000000",
        volume="0.1",
        time_in_force="post_only",
    )
    assert post.executed_volume == 0 and post.state == "cancel"
    maker = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="99999000",
        volume="0.1",
        time_in_force="post_only",
    )
    assert maker.state == "wait"
    best = eng.order_create(
        account_id=a, market=M, side="bid", ord_type="best", price="10000", time_in_force="ioc"
    )
    assert best.executed_volume == D("0.0001") and best.state == "done"


def test_order_events_sequence_for_my_order(eng: MatchingEngine) -> None:
    a = _acct(eng)
    states: list[str] = []
    eng.listeners.append(lambda ev: states.append(ev.state) if isinstance(ev, OrderEvent) else None)
    eng.order_create(account_id=a, market=M, side="bid", ord_type="limit", price="100001000", volume="0.7")
    assert states == ["wait", "trade", "trade", "done"]


def test_lists_and_chance(eng: MatchingEngine) -> None:
    a = _acct(eng, btc="0.5")
    o1 = eng.order_create(
        account_id=a, market=M, side="bid", ord_type="limit", price="90000000", volume="0.001"
    )
    o2 = eng.order_create(account_id=a, market=M, side="ask", ord_type="market", volume="0.1")
    assert [o.uuid for o in eng.orders_list(account_id=a)] == [o1.uuid]
    assert [o.uuid for o in eng.orders_list(account_id=a, states=("done", "cancel"))] == [o2.uuid]
    assert [o.uuid for o in eng.orders_list(account_id=a, states=(), order_by="asc")] == [o1.uuid, o2.uuid]
    ch = eng.chance_wire(a, M)
    assert ch["bid_fee"] == "0.0005" and ch["market"]["bid"]["min_total"] == 5000
    assert ch["bid_account"]["currency"] == "KRW" and ch["ask_account"]["balance"] == "0.4"
    rows = eng.accounts_wire(a)
    assert rows[0]["currency"] == "KRW" and rows[0]["locked"] == "90045"


def _self_cross(eng: MatchingEngine, maker_smp: str | None, taker_smp: str | None) -> tuple:
    eng.on_book(M, [], BIDS, 1)  # no source asks: the account's own ask is the best offer
    a = _acct(eng, krw="100000000", btc="1")
    maker = eng.order_create(
        account_id=a,
        market=M,
        side="ask",
        ord_type="limit",
        price="100002000",
        volume="0.1",
        smp_type=maker_smp,
    )
    taker = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="100002000",
        volume="0.04",
        smp_type=taker_smp,
    )
    return a, maker, taker


def test_self_match_cancel_maker(eng: MatchingEngine) -> None:
    a, maker, taker = _self_cross(eng, None, "cancel_maker")
    assert maker.state == "cancel" and maker.prevented_volume == D("0.1") and maker.locked == 0
    assert taker.state == "wait" and taker.executed_volume == 0  # rests: nothing else to match
    assert _bal(eng, a, "BTC") == (D("1"), 0)
    assert maker.wire()["prevented_volume"] == "0.1" and maker.wire()["prevented_locked"] == "0.1"


def test_self_match_cancel_taker(eng: MatchingEngine) -> None:
    a, maker, taker = _self_cross(
        eng, "cancel_taker", None
    )  # the maker's mode applies when the taker has none
    assert taker.state == "cancel" and taker.prevented_volume == D("0.04") and taker.executed_volume == 0
    assert maker.state == "wait" and maker.remaining_volume == D("0.1")
    assert _bal(eng, a, "KRW") == (D("100000000"), 0)


def test_self_match_reduce_shrinks_both(eng: MatchingEngine) -> None:
    a, maker, taker = _self_cross(eng, "cancel_maker", "reduce")  # the taker's mode wins
    assert taker.state == "cancel" and taker.prevented_volume == D("0.04")
    assert (
        maker.state == "wait" and maker.remaining_volume == D("0.06") and maker.prevented_volume == D("0.04")
    )
    assert _bal(eng, a, "BTC") == (D("0.94"), D("0.06"))
    assert _bal(eng, a, "KRW") == (D("100000000"), 0)


def test_self_match_without_smp_trades(eng: MatchingEngine) -> None:
    a, maker, taker = _self_cross(eng, None, None)
    assert taker.state == "done" and maker.executed_volume == D("0.04")


def test_cancel_and_new_replaces_an_open_order(eng: MatchingEngine) -> None:
    a = _acct(eng)
    old = eng.order_create(
        account_id=a,
        market=M,
        side="bid",
        ord_type="limit",
        price="99000000",
        volume="0.01",
        identifier="o-1",
    )
    out = eng.order_cancel_and_new(
        account_id=a,
        prev_identifier="o-1",
        new_ord_type="limit",
        new_price="99500000",
        new_volume="remain_only",
        new_identifier="o-2",
    )
    assert out["uuid"] == old.uuid and old.state == "cancel"
    new = eng.order_get(account_id=a, identifier="o-2")
    assert out["new_order_uuid"] == new.uuid and new.price == D("99500000") and new.volume == D("0.01")
    assert new.side == "bid" and new.market == M and new.state == "wait"
    assert _bal(eng, a, "KRW")[1] == D("99500000") * D("0.01") * D("1.0005")
    with pytest.raises(UpbitError) as exc:
        eng.order_cancel_and_new(
            account_id=a, prev_uuid=old.uuid, new_ord_type="limit", new_price="1", new_volume="1"
        )
    assert exc.value.name == "order_not_cancelable"
