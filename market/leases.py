"""Market leases on Redis: N collector processes, on any hosts, split the market list so that each market is
collected by exactly one live process, and a dead process's markets are taken over within seconds.

* **Membership**: every process beats into a sorted set (score = Redis server time + TTL), so all
  processes see the same live set without trusting each other's clocks.
* **Leases**: ``<ns>:lease:<market>`` = ``<member>|<fence>``, set with ``SET NX PX``-like atomicity in a
  script; the fencing token ``fence`` comes from ``INCR <ns>:fence:<market>``, so every acquisition of a
  market has a larger token than the one before it. Renewals and releases are compare-and-set on the token:
  a process that lost a lease (paused, cut off from Redis) can neither renew nor release the new holder's.
* **Local validity**: a lease counts as held only until ``t0 + ttl - safety`` on this process's monotonic
  clock, ``t0`` being the moment before the renewing call was sent. Redis can only expire it (and let
  another process take it) after ``t0 + ttl``, so two processes never both collect a market.
* **Balance**: :func:`assignment` (pure) gives each market one live member, counts differing by at most
  one; a market stays with its holder while the holder is under its share, the rest go by rendezvous
  hashing, so a process leaving moves (mostly) its own markets only. A holder over its share releases
  the excess, cleanly (the collector flushes the market before it lets go).
* **Last seen**: each renewal stores, per market, the receive time of the holder's newest record
  (``<ns>:last``); a new holder writes a ``gap`` row from there (less one flush interval when the
  previous holder died: its unflushed rows died with it) to the moment it took over.

The embedded default (no ``REDIS_URL``) does not use this module: one collector collects every market.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "observator:collector"
DEFAULT_TTL_S = 6.0
DEFAULT_RENEW_S = 2.0
DEFAULT_SAFETY_S = 0.5


# -- the pure core ------------------------------------------------------------------------------------
def _weight(member: str, market: str) -> int:
    digest = hashlib.blake2b(f"{member}\0{market}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shares(*, markets: int, members: Sequence[str]) -> dict[str, int]:
    """How many markets each member should hold: ``markets // n``, one more for the first
    ``markets % n`` members in sorted order."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(markets, len(ordered))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(ordered)}


def assignment(
    *, markets: Sequence[str], members: Sequence[str], holders: Mapping[str, str] | None = None
) -> dict[str, str]:
    """market -> member: every market to exactly one of ``members``, each member getting its
    :func:`shares` (counts differ by at most one).

    ``holders`` (market -> current lease holder) keeps a market where it is while its holder is a member
    under its share (markets in sorted order, so every process computes the same plan from the same
    snapshot); every other market goes to the member that ranks it highest by rendezvous hashing among
    those with room left. Deterministic: the same inputs give the same plan on every process."""
    cap = shares(markets=len(set(markets)), members=members)
    if not cap:
        return {}
    held = dict(holders or {})
    count = dict.fromkeys(cap, 0)
    plan: dict[str, str] = {}
    ordered = sorted(set(markets))
    for market in ordered:
        holder = held.get(market)
        if holder in cap and count[holder] < cap[holder]:
            plan[market] = holder
            count[holder] += 1
    for market in ordered:
        if market in plan:
            continue
        ranked = sorted(cap, key=lambda m: (_weight(m, market), m), reverse=True)
        member = next(m for m in ranked if count[m] < cap[m])
        plan[market] = member
        count[member] += 1
    return plan


@dataclass(frozen=True)
class Step:
    """What one process should do now: take ``acquire`` (free markets planned for it) and let go of
    ``release`` (markets it holds that are planned for another)."""

    acquire: tuple[str, ...]
    release: tuple[str, ...]


def plan_step(*, me: str, markets: Sequence[str], members: Sequence[str], holders: Mapping[str, str]) -> Step:
    """This process's step from one snapshot: ``holders`` is every market with a live lease."""
    members = sorted(set(members) | {me})
    plan = assignment(markets=markets, members=members, holders=holders)
    acquire = tuple(m for m in sorted(plan) if plan[m] == me and m not in holders)
    release = tuple(m for m in sorted(holders) if holders[m] == me and plan.get(m) != me)
    return Step(acquire=acquire, release=release)


def hole_start(*, last: Mapping[str, Any] | None, local_last: int | None, flush_ms: int) -> int | None:
    """Where the hole in a taken-over market begins: the previous holder's last reported record (less one
    flush interval if it did not let go cleanly: its unflushed rows are lost), or the newest row on this
    host's disk if that is later; ``None`` when the market was never collected."""
    candidates = []
    if last and isinstance(last.get("ts"), int):
        ts = int(last["ts"])
        candidates.append(ts if last.get("released") else ts - flush_ms)
    if local_last is not None:
        candidates.append(int(local_last))
    return max(candidates) if candidates else None


def namespace_for(ws_url: str) -> str:
    """The default key prefix: collectors reading the same exchange feed share its markets; stacks on other
    feeds (a test's simulator on its own port) never split markets with them on a shared Redis."""
    digest = hashlib.blake2b(ws_url.encode(), digest_size=5).hexdigest()
    return f"{DEFAULT_NAMESPACE}:{digest}"


def member_id() -> str:
    """A unique name for this process: host, pid and a random suffix (a reused pid is another member)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# -- Redis ------------------------------------------------------------------------------------------
# Server time in ms, so that members on hosts with different clocks agree on who is alive.
_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)"

# KEYS: members zset. ARGV: member, ttl_ms. Returns the live members.
_BEAT = f"""
{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: lease keys. ARGV: ttl_ms, then one token per key. Returns 1/0 per key (renewed / not ours).
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: lease, fence counter, last hash. ARGV: member, ttl_ms, market. Returns {fence, last json} or nil.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
local last = redis.call('HGET', KEYS[3], ARGV[3])
return {fence, last or ''}
"""

# KEYS: lease, last hash. ARGV: token, market, last json. Returns 1 when it was ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
return 1
"""


@dataclass
class Lease:
    market: str
    fence: int
    token: str
    valid_until: float  # monotonic


@dataclass(frozen=True)
class Acquired:
    """A market this process just took: its fencing token and what the previous holder left behind."""

    market: str
    fence: int
    last: dict[str, Any] | None

    @property
    def reason(self) -> str:
        """The gap row's reason: ``handover`` when the previous holder let go cleanly, ``takeover`` when
        its lease lapsed (it died or was cut off), ``restart`` when no holder ever reported the market."""
        if not self.last:
            return "restart"
        return "handover" if self.last.get("released") else "takeover"


@dataclass
class TickResult:
    acquired: list[Acquired] = field(default_factory=list)
    release: list[str] = field(default_factory=list)  # planned elsewhere: flush, then :meth:`release`
    lost: list[str] = field(default_factory=list)  # renewal refused: already not ours
    members: list[str] = field(default_factory=list)


class LeaseManager:
    """One process's leases. Call :meth:`tick` every ``renew_s``; drop what :meth:`expired` returns as
    soon as it does (the collector checks 10 times a second); :meth:`release` what ``tick`` says to let
    go (after flushing it); :meth:`close` on a clean stop."""

    def __init__(
        self,
        *,
        redis_url: str,
        markets: Sequence[str],
        namespace: str = DEFAULT_NAMESPACE,
        ttl_s: float = DEFAULT_TTL_S,
        renew_s: float = DEFAULT_RENEW_S,
        safety_s: float = DEFAULT_SAFETY_S,
        me: str | None = None,
        client: Any | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        if not 0 < renew_s < ttl_s - safety_s:
            raise ValueError("leases need 0 < renew_s < ttl_s - safety_s")
        if client is None:
            import redis.asyncio as aioredis  # an optional dependency: only with a Redis URL

            client = aioredis.Redis.from_url(redis_url, socket_timeout=max(1.0, renew_s))
        self.redis = client
        self.markets = sorted(set(markets))
        self.ns = namespace
        self.ttl_ms = int(ttl_s * 1000)
        self.renew_s = renew_s
        self.safety_s = safety_s
        self.me = me or member_id()
        self.clock = clock
        self.held: dict[str, Lease] = {}
        self._beat = self.redis.register_script(_BEAT)
        self._renew = self.redis.register_script(_RENEW)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)

    # keys
    def lease_key(self, market: str) -> str:
        return f"{self.ns}:lease:{market}"

    def fence_key(self, market: str) -> str:
        return f"{self.ns}:fence:{market}"

    @property
    def members_key(self) -> str:
        return f"{self.ns}:members"

    @property
    def last_key(self) -> str:
        return f"{self.ns}:last"

    # ---------------------------------------------------------------------------------------------------
    @property
    def next_expiry(self) -> float:
        """The earliest local deadline of the held leases (monotonic; +inf when none is held): a caller on
        the hot path compares one float per batch and calls :meth:`expired` only once it has passed."""
        return min((lease.valid_until for lease in self.held.values()), default=float("inf"))

    def expired(self) -> list[str]:
        """Markets whose lease may have lapsed by now (no renewal got through in time): stop collecting
        them at once, another process may take them from ``t0 + ttl`` on."""
        now = self.clock()
        gone = [m for m, lease in self.held.items() if now >= lease.valid_until]
        for market in gone:
            del self.held[market]
        return gone

    async def tick(self, *, last_seen: Mapping[str, int] | None = None) -> TickResult:
        """Beat, renew what is held, publish the newest record per held market, and take the free markets
        the plan gives this process. Raises on a Redis error (the caller logs it and tries again; held
        leases then lapse locally through :meth:`expired`)."""
        result = TickResult()
        t0 = self.clock()
        beat = await self._beat(keys=[self.members_key], args=[self.me, self.ttl_ms])
        members = [m.decode() if isinstance(m, bytes) else str(m) for m in beat]
        result.members = members
        held = list(self.held.values())
        if held:
            answers = await self._renew(
                keys=[self.lease_key(lease.market) for lease in held],
                args=[self.ttl_ms, *[lease.token for lease in held]],
            )
            for lease, ok in zip(held, answers, strict=True):
                if int(ok):
                    lease.valid_until = t0 + self.ttl_ms / 1000 - self.safety_s
                elif self.held.pop(lease.market, None) is not None:
                    result.lost.append(lease.market)
        seen = {m: int(last_seen[m]) for m in self.held if last_seen and m in last_seen}
        if seen:
            info: dict[Any, str] = {
                m: json.dumps({"ts": ts, "owner": self.me, "released": False}) for m, ts in seen.items()
            }
            await self.redis.hset(self.last_key, mapping=info)
        holders = await self.holders()
        step = plan_step(me=self.me, markets=self.markets, members=members, holders=holders)
        result.release = [m for m in step.release if m in self.held]
        for market in step.acquire:
            t1 = self.clock()
            answer = await self._acquire(
                keys=[self.lease_key(market), self.fence_key(market), self.last_key],
                args=[self.me, self.ttl_ms, market],
            )
            if answer is None:
                continue  # someone was faster
            fence = int(answer[0])
            raw = answer[1].decode() if isinstance(answer[1], bytes) else answer[1]
            last = None
            if raw:
                try:
                    last = json.loads(raw)
                except ValueError:
                    last = None
            self.held[market] = Lease(
                market=market,
                fence=fence,
                token=f"{self.me}|{fence}",
                valid_until=t1 + self.ttl_ms / 1000 - self.safety_s,
            )
            result.acquired.append(Acquired(market=market, fence=fence, last=last))
        return result

    async def holders(self) -> dict[str, str]:
        """market -> member holding its lease now (markets without a lease are absent)."""
        if not self.markets:
            return {}
        values = await self.redis.mget([self.lease_key(m) for m in self.markets])
        out = {}
        for market, value in zip(self.markets, values, strict=True):
            if value:
                text = value.decode() if isinstance(value, bytes) else value
                out[market] = text.rsplit("|", 1)[0]
        return out

    async def release(self, markets: Iterable[str], *, last_seen: Mapping[str, int] | None = None) -> None:
        """Let go of ``markets`` (already flushed by the caller), recording the newest record of each so
        the next holder's gap row starts exactly there."""
        for market in list(markets):
            lease = self.held.pop(market, None)
            if lease is None:
                continue
            ts = (last_seen or {}).get(market)
            info = json.dumps({"ts": int(ts), "owner": self.me, "released": True}) if ts is not None else ""
            await self._release(
                keys=[self.lease_key(market), self.last_key], args=[lease.token, market, info]
            )

    async def close(self, *, last_seen: Mapping[str, int] | None = None) -> None:
        """Clean stop: release every lease and leave the member set, so others take over at once."""
        try:
            await self.release(list(self.held), last_seen=last_seen)
            await self.redis.zrem(self.members_key, self.me)
        finally:
            await self.redis.aclose()
