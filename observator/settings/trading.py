"""Trading and auto-trading: paper accounts, paper fills, scheduled orders, the auto-trading cost and
retention; the trading app's periodic tasks."""

from __future__ import annotations

from celery.schedules import crontab

from observator.env import env

PAPER_STARTING_KRW = env("PAPER_STARTING_KRW", default="10000000")
# Paper fills use the collector's live book when at most this old (ms), else a REST snapshot (0: always).
PAPER_BOOK_MAX_AGE_MS = env.int("PAPER_BOOK_MAX_AGE_MS", default=2000)
# Also queue each time-triggered scheduled order with an ETA at its due time (the 1 s beat is the safety net).
TRADING_PRECISE_SCHEDULE = env.bool("TRADING_PRECISE_SCHEDULE", default=True)
# Auto-trading's round-trip cost = both fees + this factor x (spread / mid) of the live book: 0.5 (default)
# = the half-spread, 1.0 = the full spread a market buy-then-sell pays. Between 0 and 2.
AUTOTRADE_SPREAD_COST_FACTOR = env("AUTOTRADE_SPREAD_COST_FACTOR", default="0.5")
# "hold" decisions older than this many days are pruned (the buys and sells are kept).
AUTOTRADE_HOLD_KEEP_DAYS = env.float("AUTOTRADE_HOLD_KEEP_DAYS", default=7.0)
# (checked when the autotrade app starts: autotrade.apps.AutotradeConfig.ready)

# Periodic tasks (observator/settings/celery.py assembles CELERY_BEAT_SCHEDULE).
trading_beat_schedule = {
    "trading-fire-scheduled-orders": {"task": "trading.tasks.fire_due_scheduled_orders", "schedule": 1.0},
    "trading-reconcile-open-orders": {"task": "trading.tasks.reconcile_open_orders", "schedule": 60.0},
    # Fill resting paper limit orders as the market trades through them; refresh open live orders.
    "trading-sync-open-orders": {"task": "trading.tasks.sync_open_orders", "schedule": 1.0},
    "trading-daily-reports": {
        "task": "trading.tasks.send_daily_reports",
        "schedule": crontab(hour=8, minute=0),
    },
}
