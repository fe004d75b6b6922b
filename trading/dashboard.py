"""The ``/trade`` dashboard page: renders the shell and the client configuration; live data comes over
WebSockets (``/ws/market/<CODE>/``, ``/ws/user/``) and actions go through the REST API."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils import translation
from django.utils.html import conditional_escape
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from accounts.selectors import exchange_credential_status
from market.upbit.protocol import is_krw_market

DEFAULT_MARKET = "KRW-BTC"

# REST endpoints the page calls (initial loads, re-sync after a reconnect, actions), by URL name: reversed
# when the page is rendered, so the client has no URL knowledge of its own and the paths follow the URLconf.
# The second item names the path's parameter, which the client fills in (``{code}``, ``{id}``).
API_ENDPOINTS: dict[str, tuple[str, str | None]] = {
    "markets": ("market-list", None),
    "ticker": ("market-ticker", "code"),
    "orderbook": ("market-orderbook", "code"),
    "trades": ("market-trades", "code"),
    "candles": ("market-candles", "code"),
    "exchanges": ("market-exchanges-btc", None),
    "news": ("market-news", None),
    "mode": ("trading-api:mode", None),
    "balances": ("trading-api:balances", None),
    "portfolio": ("trading-api:portfolio", None),
    "buy": ("trading-api:buy", None),
    "sell": ("trading-api:sell", None),
    "limit": ("trading-api:limit", None),
    "orders": ("trading-api:orders", None),
    "order_cancel": ("trading-api:order-cancel", "order_id"),
    "scheduled": ("trading-api:scheduled", None),
    "scheduled_cancel": ("trading-api:scheduled-cancel", "scheduled_order_id"),
    "model_state": ("ml-api:model-state", None),
    "prediction": ("ml-api:prediction-latest", None),
}
_ID_SENTINEL = 918273645  # reversed in place of an id, then replaced by the client's ``{id}``


def api_endpoints() -> dict[str, str]:
    """The page's endpoints as URL templates; one whose route is not installed (the ML API may be absent)
    is left out, and the page skips its call."""
    out: dict[str, str] = {}
    for key, (url_name, param) in API_ENDPOINTS.items():
        try:
            if param is None:
                out[key] = reverse(url_name)
            elif param == "code":
                out[key] = unquote(reverse(url_name, kwargs={"code": "{code}"}))
            else:
                out[key] = reverse(url_name, kwargs={param: _ID_SENTINEL}).replace(str(_ID_SENTINEL), "{id}")
        except NoReverseMatch:
            continue
    return out


# Every string the scripts show, translated on the server for the page's language (msgids in locale/).
JS_STRINGS: dict[str, Any] = {
    "connecting": _("Connecting…"),
    "live": _("Live"),
    "reconnecting": _("Reconnecting in {s} s…"),
    "reconnecting_now": _("Reconnecting…"),
    "offline": _("You are offline. Waiting for the network…"),
    "stale": _("No market data for {s} s: the market may be closed or the feed interrupted."),
    "stale_short": _("stale"),
    "fx_note": _("USD/KRW {rate} (daily reference rate: {source})"),
    "fx_source": _("Exchange rate: {source}"),
    "no_data": _("No data yet"),
    "loading": _("Loading…"),
    "error_generic": _("Something went wrong. Please try again."),
    "error_network": _("The server could not be reached. Please try again."),
    "error_unavailable": _("This information is not available right now."),
    "session_expired": _("Your session has expired. Please log in again."),
    "log_in": _("Log in"),
    "order_sent": _("Order placed."),
    "order_cancelled": _("Order cancelled."),
    "scheduled_created": _("Scheduled order created."),
    "scheduled_cancelled": _("Scheduled order cancelled."),
    "confirm_cancel": _("Cancel this order?"),
    "cancel": _("Cancel"),
    "buy": _("Buy"),
    "sell": _("Sell"),
    "bid": _("Buy"),
    "ask": _("Sell"),
    "none": _("None"),
    "running": _("Running"),
    "stopped": _("Stopped"),
    "paper": _("PAPER"),
    "live_mode": _("LIVE"),
    "premium": _("premium"),
    "prediction": _("Prediction"),
    "predicted_return": _("Predicted return {v} over {h} s"),
    "model_none": _("No active model yet"),
    "no_orders": _("No orders yet."),
    "no_open_orders": _("No open orders."),
    "no_scheduled": _("No scheduled orders."),
    "no_news": _("No news right now."),
    "no_assets": _("No coins held."),
    "at_time": _("at {t}"),
    "when_above": _("when price ≥ {p}"),
    "when_below": _("when price ≤ {p}"),
    "expires": _("expires {t}"),
    "krw_amount": _("{v} KRW"),
    "invalid_amount": _("Enter a positive amount."),
    "invalid_time": _("Choose a time in the future."),
    "chart_fallback": _("Simple chart (the chart library is not installed)."),
    "depth_label": _("Cumulative order book depth"),
    "market_changed": _("Market changed to {m}."),
    "mode_paper_hint": _("Paper trading: orders are simulated against the live order book."),
    "avg_fill_price": _("Average fill price"),
    "limit_price": _("Limit price (nothing filled)"),
    "ordered_amount": _("Amount ordered (nothing filled)"),
    "executed_volume": _("Executed volume"),
    "executed_of_ordered": _("Executed / ordered volume"),
    "state_pending": _("Pending"),
    "state_open": _("Open"),
    "state_done": _("Filled"),
    "state_cancelled": _("Cancelled"),
    "state_rejected": _("Rejected"),
    "state_firing": _("Firing"),
    "state_fired": _("Fired"),
    "state_filled": _("Filled"),
    "state_failed": _("Failed"),
    "state_expired": _("Expired"),
    "source_manual": _("Manual"),
    "source_scheduled": _("Scheduled"),
    "source_auto": _("Auto"),
}


CHART_LIBRARY = "vendor/lightweight-charts/dist/lightweight-charts.standalone.production.mjs"


@functools.cache
def _vendor_chart_url() -> str | None:
    """The chart library from npm when the setup command installed it; None: the page's built-in renderer."""
    return static(CHART_LIBRARY) if finders.find(CHART_LIBRARY) else None


def trade_page_context(*, user: Any, market: str, csrf_token: str) -> dict[str, Any]:
    """The page's server-rendered context: the client configuration and what the first paint needs."""
    keys = exchange_credential_status(user=user)
    config = {
        "market": market,
        "csrf": csrf_token,
        "language": translation.get_language() or settings.LANGUAGE_CODE,
        "ws": {"market": "/ws/market/{code}/", "user": "/ws/user/"},
        "api": api_endpoints(),
        "has_keys": keys.stored,
        "fee_rate": str(settings.UPBIT_FEE_RATE),
        "min_order_krw": int(settings.UPBIT_MIN_ORDER_KRW),
        # No market update for this long: the page says the market may be closed or the feed interrupted.
        "stale_after_s": int(settings.DASHBOARD_STALE_AFTER_S),
        "vendor_chart": _vendor_chart_url(),
        "strings": {k: str(v) for k, v in JS_STRINGS.items()},
    }
    # The apps above trading add their part (auto-trading: its endpoints, strings and the threshold's range).
    for path in settings.TRADE_PAGE_CONFIG:
        extra = dict(import_string(path)(user=user))
        config["api"].update(extra.pop("api", {}))
        config["strings"].update({k: str(v) for k, v in extra.pop("strings", {}).items()})
        config.update(extra)
    return {"config": config, "market": market, "has_keys": keys.stored}


@require_GET
@login_required
def trade_page(request: HttpRequest) -> HttpResponse:
    market = str(request.GET.get("market", DEFAULT_MARKET)).upper()
    if not is_krw_market(market):
        market = DEFAULT_MARKET
    context = trade_page_context(user=request.user, market=market, csrf_token=get_token(request))
    # Panels of the apps above trading (auto-trading), rendered in order where the template places them.
    context["panels"] = [conditional_escape(import_string(p)(request)) for p in settings.TRADE_PAGE_PANELS]
    return render(request, "trading/trade.html", context)
