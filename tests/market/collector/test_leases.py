"""Market leases (market/leases.py): the balanced plan (pure) and the Redis protocol (real Redis)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import Counter

import pytest

from market import leases

MARKETS = [f"KRW-C{i:03d}" for i in range(200)]


def test_assignment_gives_every_market_one_member_evenly() -> None:
    members = ["a", "b", "c"]
    plan = leases.assignment(markets=MARKETS, members=members)
    assert set(plan) == set(MARKETS)
    assert sorted(Counter(plan.values()).values()) == [66, 67, 67]
    # Every process computes the same plan from the same snapshot, whatever the order it lists things in.
    assert leases.assignment(markets=MARKETS[::-1], members=members[::-1]) == plan


def test_a_member_leaving_moves_only_its_own_markets() -> None:
    plan = leases.assignment(markets=MARKETS, members=["a", "b", "c"])
    after = leases.assignment(
        markets=MARKETS, members=["a", "b"], holders={m: h for m, h in plan.items() if h != "c"}
    )
    moved = [m for m in MARKETS if plan[m] != after[m]]
    assert moved and all(plan[m] == "c" for m in moved)
    assert sorted(Counter(after.values()).values()) == [100, 100]


def test_a_member_joining_takes_a_fair_share_from_the_others() -> None:
    plan = leases.assignment(markets=MARKETS, members=["a", "b"])
    after = leases.assignment(markets=MARKETS, members=["a", "b", "c"], holders=plan)
    moved = [m for m in MARKETS if plan[m] != after[m]]
    assert all(after[m] == "c" for m in moved) and len(moved) == Counter(after.values())["c"] >= 66


def test_plan_step_acquires_only_free_markets_and_releases_the_excess() -> None:
    holders = dict.fromkeys(MARKETS[:150], "a") | dict.fromkeys(MARKETS[150:], "b")
    step_c = leases.plan_step(me="c", markets=MARKETS, members=["a", "b"], holders=holders)
    assert step_c.acquire == ()  # nothing is free: it waits for the others to let go
    step_a = leases.plan_step(me="a", markets=MARKETS, members=["a", "b", "c"], holders=holders)
    assert len(step_a.release) == 150 - 67 and not step_a.acquire
    freed = {m: h for m, h in holders.items() if m not in step_a.release}
    step_c = leases.plan_step(me="c", markets=MARKETS, members=["a", "b", "c"], holders=freed)
    assert set(step_c.acquire) <= set(step_a.release) and step_c.acquire


def test_hole_start() -> None:
    # A clean release reports exactly where its files end; a dead holder's last flush interval is lost.
    assert leases.hole_start(last={"ts": 10_000, "released": True}, local_last=None, flush_ms=2000) == 10_000
    assert leases.hole_start(last={"ts": 10_000, "released": False}, local_last=None, flush_ms=2000) == 8_000
    assert leases.hole_start(last={"ts": 10_000, "released": False}, local_last=9_500, flush_ms=2000) == 9_500
    assert leases.hole_start(last=None, local_last=7_000, flush_ms=2000) == 7_000
    assert leases.hole_start(last=None, local_last=None, flush_ms=2000) is None


def test_namespace_differs_per_feed() -> None:
    a = leases.namespace_for("ws://127.0.0.1:1/websocket/v1")
    assert a == leases.namespace_for("ws://127.0.0.1:1/websocket/v1")
    assert a != leases.namespace_for("ws://127.0.0.1:2/websocket/v1")


def test_renew_must_leave_room_before_the_ttl() -> None:
    with pytest.raises(ValueError):
        leases.LeaseManager(redis_url="redis://unused", markets=MARKETS, ttl_s=3, renew_s=3, client=object())


# -- real Redis -----------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
redis_only = pytest.mark.skipif(not REDIS_URL.startswith("redis"), reason="needs REDIS_URL")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _cleanup(ns: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(f"{ns}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@redis_only
def test_two_managers_split_markets_and_a_dead_ones_markets_are_taken_with_a_higher_fence() -> None:
    ns = f"test:leases:{secrets.token_hex(4)}"
    markets = MARKETS[:10]

    async def scenario() -> None:
        def manager(me: str) -> leases.LeaseManager:
            return leases.LeaseManager(
                redis_url=REDIS_URL,
                markets=markets,
                namespace=ns,
                ttl_s=1.5,
                renew_s=0.4,
                safety_s=0.2,
                me=me,
            )

        a, b = manager("a"), manager("b")
        try:
            first = await a.tick(last_seen={})
            assert len(first.acquired) == 10  # alone: everything
            assert {x.reason for x in first.acquired} == {"restart"}
            joined = await b.tick()
            assert not joined.acquired  # all held: b waits for a to let go
            step = await a.tick(last_seen=dict.fromkeys(markets, 123))
            assert len(step.release) == 5
            await a.release(step.release, last_seen=dict.fromkeys(markets, 456))
            taken = await b.tick()
            assert sorted(x.market for x in taken.acquired) == sorted(step.release)
            assert {x.reason for x in taken.acquired} == {"handover"}
            assert {x.last["ts"] for x in taken.acquired if x.last} == {456}
            assert sorted(await a.holders()) == sorted(markets)
            # a dies (no more renewals): its leases lapse in Redis; b takes them with a new fence.
            fences = {m: lease.fence for m, lease in a.held.items()}
            stolen: list[leases.Acquired] = []
            for _ in range(10):  # b goes on renewing its own meanwhile
                await asyncio.sleep(0.4)
                result = await b.tick()
                assert not result.lost
                stolen += result.acquired
            assert sorted(x.market for x in stolen) == sorted(fences)
            assert all(x.fence > fences[x.market] for x in stolen)
            assert {x.reason for x in stolen} == {"takeover"}
            # a's renewal is refused (the token is b's now): it learns it lost them.
            lost = await a.tick()
            assert sorted(lost.lost) == sorted(fences) and not lost.acquired
        finally:
            await b.close()
            await a.redis.aclose()
            await _cleanup(ns)

    asyncio.run(scenario())


@redis_only
def test_a_lease_not_renewed_in_time_lapses_locally_before_redis_can_give_it_away() -> None:
    ns = f"test:leases:{secrets.token_hex(4)}"
    clock = FakeClock()

    async def scenario() -> None:
        m = leases.LeaseManager(
            redis_url=REDIS_URL,
            markets=["KRW-BTC"],
            namespace=ns,
            ttl_s=6,
            renew_s=2,
            safety_s=0.5,
            clock=clock,
        )
        try:
            await m.tick()
            assert list(m.held) == ["KRW-BTC"]
            clock.now += 5.4
            assert m.expired() == []
            clock.now += 0.2  # 5.6 s > ttl - safety: stop collecting, Redis keeps it 0.4 s more
            assert m.expired() == ["KRW-BTC"] and not m.held
        finally:
            await m.close()
            await _cleanup(ns)

    asyncio.run(scenario())
