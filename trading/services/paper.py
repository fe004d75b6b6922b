"""Paper-mode services: matching resting paper orders and syncing the user's orders from it."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from trading.exchanges.paper import PaperExchange, paper_account_wipe, paper_match_market
from trading.messages import BalancesEvent
from trading.models import OPEN_ORDER_STATES, Order, OrderState, PaperOrder, Position, TradingMode
from trading.services.orders import order_cancel, order_sync
from trading.services.realtime import user_event_publish

logger = logging.getLogger(__name__)


def paper_orders_match(*, markets: list[str] | None = None) -> int:
    """Run the paper matcher on every market with resting paper orders; returns how many orders changed."""
    markets = markets or sorted(set(PaperOrder.objects.filter(state="wait").values_list("market", flat=True)))
    changed = 0
    for market in markets:
        try:
            touched = paper_match_market(market=market)
        except ApplicationError as exc:
            logger.warning("paper matching for %s skipped: %s", market, exc.code)
            continue
        for paper_order in touched:
            order = (
                Order.objects.filter(
                    user_id=paper_order.user_id,
                    mode=TradingMode.PAPER,
                    idempotency_key=paper_order.identifier,
                )
                .select_related("user")
                .first()
            )
            if order is not None and order.state in (OrderState.PENDING, OrderState.OPEN):
                order_sync(order=order, exchange=PaperExchange(order.user))
            changed += 1
    return changed


def paper_account_reset(*, user: Any) -> None:
    """Start paper trading over: open paper orders cancelled, balances back to the starting KRW, paper
    positions and realized P&L cleared (the order history stays)."""
    for order in Order.objects.filter(user=user, mode=TradingMode.PAPER, state__in=OPEN_ORDER_STATES):
        try:
            order_cancel(user=user, order_id=order.pk)
        except ApplicationError:
            Order.objects.filter(pk=order.pk).update(state=OrderState.CANCELLED)
    with transaction.atomic():
        paper_account_wipe(user=user)
        Position.objects.filter(user=user, mode=TradingMode.PAPER).delete()
        user_event_publish(user_id=user.pk, event=BalancesEvent(mode=str(TradingMode.PAPER), reset=True))
