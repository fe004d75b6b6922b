"""Trading services (writes). Import from here: ``from trading.services import order_place``."""

from trading.services.killswitch import kill_switch_engage, kill_switch_release
from trading.services.orders import (
    order_apply_exchange_state,
    order_cancel,
    order_place,
    order_refresh_if_stale,
    order_sync,
    orders_cancel_all,
    orders_reconcile,
)
from trading.services.paper import paper_account_reset, paper_orders_match
from trading.services.profiles import (
    auto_trading_halt,
    auto_trading_resume,
    risk_limits_update,
    trading_mode_set,
    trading_profile_ensure,
)
from trading.services.reports import report_send, reports_send_daily
from trading.services.risk import daily_loss_check
from trading.services.scheduled import (
    scheduled_order_cancel,
    scheduled_order_create,
    scheduled_order_fire,
    scheduled_orders_fire_due,
)

__all__ = [
    "auto_trading_halt",
    "auto_trading_resume",
    "daily_loss_check",
    "kill_switch_engage",
    "kill_switch_release",
    "order_apply_exchange_state",
    "order_cancel",
    "order_place",
    "order_refresh_if_stale",
    "order_sync",
    "orders_cancel_all",
    "orders_reconcile",
    "paper_account_reset",
    "paper_orders_match",
    "report_send",
    "reports_send_daily",
    "risk_limits_update",
    "scheduled_order_cancel",
    "scheduled_order_create",
    "scheduled_order_fire",
    "scheduled_orders_fire_due",
    "trading_mode_set",
    "trading_profile_ensure",
]
