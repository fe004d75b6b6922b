"""The simulator's test controls (``/_sim/...``, not part of Upbit; unauthenticated, bind to localhost):
accounts and deposits, dropping every WebSocket, pausing the market, and the state counters."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import TYPE_CHECKING

from aiohttp import web

from market.upbit.protocol import UpbitError, decimal_str

from .responses import json_response

if TYPE_CHECKING:
    from .server import Simulator


class SimControls:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/_sim/accounts", self.h_account)
        r.add_post("/_sim/accounts/{account_id}/deposit", self.h_deposit)
        r.add_post("/_sim/drop_websockets", self.h_drop)
        r.add_post("/_sim/pause", self.h_pause)
        r.add_post("/_sim/resume", self.h_resume)
        r.add_get("/_sim/state", self.h_state)

    async def h_account(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            out = self.sim.account_create(
                krw=body.get("krw", 0),
                assets=body.get("assets") or {},
                access_key=body.get("access_key"),
                secret_key=body.get("secret_key"),
                expired=bool(body.get("expired", False)),
            )
        except (ValueError, ArithmeticError) as exc:
            return json_response({"error": {"name": "invalid_parameter", "message": str(exc)}}, 400)
        return json_response(out, 201)

    async def h_deposit(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        try:
            body = await request.json()
            b = self.sim.engine.account_deposit(
                account_id=account_id,
                currency=str(body["currency"]).upper(),
                amount=Decimal(str(body["amount"])),
            )
        except UpbitError:
            return json_response({"error": {"name": "not_found", "message": "unknown account"}}, 404)
        except (ValueError, KeyError, ArithmeticError, TypeError) as exc:
            return json_response({"error": {"name": "invalid_parameter", "message": str(exc)}}, 400)
        return json_response({"balance": decimal_str(b.balance), "locked": decimal_str(b.locked)})

    async def h_drop(self, request: web.Request) -> web.Response:
        abort = request.query.get("mode", "abort") != "close"
        return json_response({"dropped": self.sim.hub.drop_all(abort=abort)})

    async def h_pause(self, request: web.Request) -> web.Response:
        seconds = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict) and body.get("seconds") is not None:
                    seconds = float(body["seconds"])
        self.sim.pause(seconds)
        return json_response({"paused": True, "seconds": seconds})

    async def h_resume(self, request: web.Request) -> web.Response:
        self.sim.resume()
        return json_response({"paused": False})

    async def h_state(self, request: web.Request) -> web.Response:
        sim = self.sim
        return json_response(
            {
                "markets": sim.markets,
                "now_ms": sim.now_ms(),
                "connections": len(sim.hub.conns),
                "paused": sim.clock.paused,
                "published_books": sim.feed.published_books,
                "accounts": len(sim.engine.accounts),
                "signal_strength": sim.config.signal_strength if sim.config.source == "synthetic" else 0.0,
                "requests": dict(sim.limiter.requests),  # per rate-limit group, since start
                "refused": dict(sim.limiter.refused),  # 429s per group
            }
        )
