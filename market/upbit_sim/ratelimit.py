"""Upbit's rate limits in the simulator: fixed one-second buckets per (group, scope), ``Remaining-Req``
headers and the 429 answer (plain text like Upbit, or a JSON envelope with ``SimConfig.json_429``)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from aiohttp import web

from market.upbit.protocol import TOO_MANY_REQUESTS_TEXT, error_body, format_remaining_req

from .responses import json_response


class RateLimiter:
    """Fixed one-second buckets per (group, scope)."""

    def __init__(self, limits: dict[str, int], clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock  # tests freeze it to pin a burst into one window
        self._buckets: dict[tuple[str, str], list[int]] = {}
        # Requests and 429s per group since start (tests and benchmarks count e.g. order-book calls).
        self.requests: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()

    def hit(self, group: str, scope: str) -> tuple[bool, int]:
        self.requests[group] += 1
        limit = self.limits.get(group)
        if limit is None:
            return True, 999
        sec = int(self.clock())
        b = self._buckets.get((group, scope))
        if b is None or b[0] != sec:
            b = self._buckets[(group, scope)] = [sec, 0]
            if len(self._buckets) > 10_000:
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] == sec}
                self._buckets[(group, scope)] = b
        if b[1] >= limit:
            self.refused[group] += 1
            return False, 0
        b[1] += 1
        return True, limit - b[1]

    def reset(self) -> None:
        """Empty every bucket (tests sharing one simulator start each case with a fresh second)."""
        self._buckets.clear()


def limits_for(defaults: dict[str, int], configured: dict[str, int] | None) -> dict[str, int]:
    """``None`` = Upbit's limits; ``{}`` = no limits; a partial dict overrides Upbit's per group."""
    if configured is None:
        return dict(defaults)
    return {} if not configured else {**defaults, **configured}


class RateGate:
    """A request's pass through the limiter: the bucket hit, the ``Remaining-Req`` header, the 429."""

    def __init__(self, limiter: RateLimiter, *, json_429: bool) -> None:
        self.limiter = limiter
        self.json_429 = json_429

    def limit(
        self, request: web.Request, group: str, scope: str | None = None
    ) -> tuple[bool, dict[str, str]]:
        ok, left = self.limiter.hit(group, scope or request.remote or "?")
        return ok, {"Remaining-Req": format_remaining_req(group, left)}

    def too_many(self, headers: dict[str, str]) -> web.Response:
        if self.json_429:
            return json_response(error_body("too_many_requests", TOO_MANY_REQUESTS_TEXT), 429, headers)
        return web.Response(status=429, text=TOO_MANY_REQUESTS_TEXT, headers=headers)
