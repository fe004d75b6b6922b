"""The simulator's exchange REST API (JWT, decimal strings, snake_case error names): accounts, order
chance, placing, reading, listing and cancelling orders, each a thin call into the matching engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from market.upbit.errors import upbit_error
from market.upbit.protocol import UpbitError

from .auth import ApiKey, authenticate
from .engine import Order
from .responses import Reject, exchange_error, json_response, parse_time
from .stats import DAY

if TYPE_CHECKING:
    from .server import Simulator

Params = list[tuple[str, Any]]
Handler = Callable[[ApiKey, dict[str, Any], Params], Any]


def _multi(params: Params, name: str) -> list[str]:
    return [str(v) for k, v in params if k == name or k == name + "[]"]


def _one(p: dict[str, Any]) -> dict[str, str | None]:
    return {"uuid": p.get("uuid"), "identifier": p.get("identifier")}


def _list_args(p: dict[str, Any], params: Params, default_states: tuple[str, ...]) -> dict[str, Any]:
    states = _multi(params, "states") or ([p["state"]] if p.get("state") else list(default_states))
    for s in states:
        if s not in ("wait", "watch", "done", "cancel"):
            raise upbit_error("validation_error", "state does not have a valid value")
    order_by = str(p.get("order_by") or "desc")
    if order_by not in ("asc", "desc"):
        raise upbit_error("validation_error", "order_by does not have a valid value")
    try:
        page = max(1, int(p.get("page") or 1))
        limit = int(p.get("limit") or 100)
    except ValueError:
        raise upbit_error("validation_error", "page/limit must be integers") from None
    return {"states": states, "order_by": order_by, "page": page, "limit": max(1, limit)}


class ExchangeApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.engine = sim.engine

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/accounts", self.h_accounts)
        r.add_get("/v1/orders/chance", self.h_chance)
        r.add_post("/v1/orders", self.h_order_create)
        r.add_post("/v1/orders/test", self.h_order_test)
        r.add_post("/v1/orders/cancel_and_new", self.h_cancel_and_new)
        r.add_get("/v1/order", self.h_order_get)
        r.add_delete("/v1/order", self.h_order_cancel)
        r.add_get("/v1/orders/open", self.h_orders_open)
        r.add_get("/v1/orders/closed", self.h_orders_closed)
        r.add_get("/v1/orders/uuids", self.h_orders_uuids)
        r.add_get("/v1/orders", self.h_orders_legacy)
        r.add_delete("/v1/orders/uuids", self.h_cancel_uuids)
        r.add_delete("/v1/orders/open", self.h_cancel_open)

    async def _exchange(
        self, request: web.Request, group: str, fn: Handler, status: int = 200
    ) -> web.Response:
        """Authenticate, run ``fn(key, first value per name, all pairs)``, answer it or its error."""
        try:
            key, params, hdr = await authenticate(request, group, keys=self.sim.keys, gate=self.sim.gate)
        except Reject as r:
            return r.response
        single: dict[str, Any] = {}
        for k, v in params:
            single.setdefault(k, v)
        try:
            result = fn(key, single, params)
        except UpbitError as exc:
            return exchange_error(exc, hdr)
        except (ValueError, TypeError, ArithmeticError) as exc:  # malformed parameter values
            return exchange_error(upbit_error("validation_error", f"invalid parameter: {exc}"), hdr)
        finally:
            self.sim.feed.flush_user_trades()
        return json_response(result, status, hdr)

    async def h_accounts(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request, "default", lambda k, p, _: self.engine.accounts_wire(k.account_id)
        )

    async def h_chance(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            market = str(p.get("market") or "")
            if not market:
                raise upbit_error("validation_error", "market is missing")
            return self.engine.chance_wire(k.account_id, market)

        return await self._exchange(request, "default", fn)

    async def h_order_create(self, request: web.Request) -> web.Response:
        return await self._order_create(request, dry_run=False)

    async def h_order_test(self, request: web.Request) -> web.Response:
        """Validates like ``POST /v1/orders`` and answers with the order it would create; places nothing."""
        return await self._order_create(request, dry_run=True)

    async def _order_create(self, request: web.Request, *, dry_run: bool) -> web.Response:
        group = "order-test" if dry_run else "order"
        if "form" in request.headers.get("Content-Type", ""):
            ok, hdr = self.sim.gate.limit(request, group)
            return exchange_error(upbit_error("validation_error", "application/json body is required"), hdr)

        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            order = self.engine.order_create(
                dry_run=dry_run,
                account_id=k.account_id,
                market=str(p["market"]).upper() if p.get("market") else None,
                side=p.get("side"),
                ord_type=p.get("ord_type"),
                price=p.get("price"),
                volume=p.get("volume"),
                time_in_force=p.get("time_in_force") or None,
                identifier=p.get("identifier"),
                smp_type=p.get("smp_type") or None,
            )
            return order.wire()

        return await self._exchange(request, group, fn, status=201)

    async def h_cancel_and_new(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], _: Any) -> Any:
            return self.engine.order_cancel_and_new(
                account_id=k.account_id,
                prev_uuid=p.get("prev_order_uuid"),
                prev_identifier=p.get("prev_order_identifier"),
                new_ord_type=p.get("new_ord_type"),
                new_volume=p.get("new_volume"),
                new_price=p.get("new_price"),
                new_identifier=p.get("new_identifier"),
                new_time_in_force=p.get("new_time_in_force") or None,
                new_smp_type=p.get("new_smp_type") or None,
            )

        return await self._exchange(request, "order", fn, status=201)

    async def h_order_get(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request,
            "default",
            lambda k, p, _: self.engine.order_get(account_id=k.account_id, **_one(p)).wire(with_trades=True),
        )

    async def h_order_cancel(self, request: web.Request) -> web.Response:
        return await self._exchange(
            request, "default", lambda k, p, _: self.engine.order_cancel(account_id=k.account_id, **_one(p))
        )

    async def h_orders_open(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            a = _list_args(p, params, ("wait",))
            if any(s not in ("wait", "watch") for s in a["states"]):
                raise upbit_error("validation_error", "open orders take state wait or watch")
            a["limit"] = min(100, a["limit"])
            orders = self.engine.orders_list(account_id=k.account_id, market=p.get("market"), **a)
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_closed(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            a = _list_args(p, params, ("done", "cancel"))
            if any(s not in ("done", "cancel") for s in a["states"]):
                raise upbit_error("validation_error", "closed orders take state done or cancel")
            a["limit"] = min(1000, a["limit"])
            end = parse_time(str(p["end_time"])) if p.get("end_time") else None
            start = parse_time(str(p["start_time"])) if p.get("start_time") else None
            if (p.get("end_time") and end is None) or (p.get("start_time") and start is None):
                raise upbit_error("validation_error", "start_time/end_time are not valid")
            if start is None and end is None:
                end = self.sim.now_ms()
            if start is None:
                start = (end or self.sim.now_ms()) - 7 * DAY
            if end is None:
                end = start + 7 * DAY
            if end - start > 7 * DAY:
                raise upbit_error("validation_error", "the window must be 7 days or less")
            orders = self.engine.orders_list(
                account_id=k.account_id, market=p.get("market"), start_ms=start, end_ms=end, **a
            )
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_uuids(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            uuids, idents = _multi(params, "uuids"), _multi(params, "identifiers")
            if bool(uuids) == bool(idents):
                raise upbit_error("validation_error", "uuids[] or identifiers[] (one of them) is required")
            if len(uuids) > 100 or len(idents) > 100:
                raise upbit_error("validation_error", "at most 100 ids")
            orders = self.engine.orders_list(
                account_id=k.account_id, market=p.get("market"), states=(), uuids=uuids or None,
                identifiers=idents or None, order_by=str(p.get("order_by") or "desc"), limit=100,
            )  # fmt: skip
            if idents and not uuids and not orders:
                return []
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    async def h_orders_legacy(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            a = _list_args(p, params, ("wait",))
            open_ = [s for s in a["states"] if s in ("wait", "watch")]
            if open_ and len(open_) != len(a["states"]):
                raise upbit_error("validation_error", "open and closed states cannot be mixed")
            a["limit"] = min(100, a["limit"])
            uuids, idents = _multi(params, "uuids"), _multi(params, "identifiers")
            orders = self.engine.orders_list(
                account_id=k.account_id,
                market=p.get("market"),
                uuids=uuids or None,
                identifiers=idents or None,
                **a,
            )
            return [o.wire() for o in orders]

        return await self._exchange(request, "default", fn)

    def _batch_cancel(self, account_id: str, orders: list[Order]) -> dict[str, Any]:
        ok, failed = [], []
        for o in orders:
            try:
                snap = self.engine.order_cancel(account_id=account_id, uuid=o.uuid)
                ok.append({"uuid": snap["uuid"], "market": snap["market"], "identifier": o.identifier})
            except UpbitError:
                failed.append({"uuid": o.uuid, "market": o.market, "identifier": o.identifier})
        return {
            "success": {"count": len(ok), "orders": ok},
            "failed": {"count": len(failed), "orders": failed},
        }

    async def h_cancel_uuids(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            uuids, idents = _multi(params, "uuids"), _multi(params, "identifiers")
            if bool(uuids) == bool(idents):
                raise upbit_error("validation_error", "uuids[] or identifiers[] (one of them) is required")
            if len(uuids) > 20 or len(idents) > 20:
                raise upbit_error("validation_error", "at most 20 ids")
            orders = self.engine.orders_list(
                account_id=k.account_id, states=(), uuids=uuids or None, identifiers=idents or None, limit=100
            )
            return self._batch_cancel(k.account_id, orders)

        return await self._exchange(request, "default", fn)

    async def h_cancel_open(self, request: web.Request) -> web.Response:
        def fn(k: ApiKey, p: dict[str, Any], params: Params) -> Any:
            side = str(p.get("cancel_side") or "all")
            if side not in ("all", "ask", "bid"):
                raise upbit_error("validation_error", "cancel_side does not have a valid value")
            pairs = [x for x in str(p.get("pairs") or "").split(",") if x]
            quotes = [x for x in str(p.get("quote_currencies") or "").split(",") if x]
            if pairs and quotes:
                raise upbit_error("validation_error", "pairs and quote_currencies cannot be used together")
            excluded = {x for x in str(p.get("excluded_pairs") or "").split(",") if x}
            count = max(1, min(300, int(p.get("count") or 20)))
            orders = self.engine.orders_list(
                account_id=k.account_id,
                states=("wait",),
                order_by=str(p.get("order_by") or "desc"),
                limit=10_000,
            )
            sel = [
                o for o in orders
                if (side == "all" or o.side == side)
                and (not pairs or o.market in pairs)
                and (not quotes or o.market.split("-", 1)[0] in quotes)
                and o.market not in excluded
            ][:count]  # fmt: skip
            return self._batch_cancel(k.account_id, sel)

        return await self._exchange(request, "order-cancel-all", fn)
