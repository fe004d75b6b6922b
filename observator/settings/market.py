"""Market data: the Upbit endpoints and fee, the markets recorded, the collector and its day files, the live
fan-out, other exchanges' tickers and the news feeds; the market app's periodic tasks."""

from __future__ import annotations

from decimal import Decimal

from celery.schedules import crontab

from market.upbit import protocol as _upbit_protocol
from observator.env import VAR_DIR, env

UPBIT_REST_URL = env("UPBIT_REST_URL", default="https://api.upbit.com")
UPBIT_WS_URL = env("UPBIT_WS_URL", default="wss://api.upbit.com/websocket/v1")
# True when the launcher fell back to the local Upbit simulator (or it was chosen): every page says so.
MARKET_SIMULATED = env.bool("MARKET_SIMULATED", default=False)
# The simulator's planted order-flow signal (docs/simulator.md), shown in the banner; the launcher sets it.
SIM_SIGNAL_STRENGTH = env.float("SIM_SIGNAL_STRENGTH", default=0.0)
MARKET_CODES = env.list("MARKET_CODES", default=["KRW-BTC"])
MARKET_DATA_DIR = env.path("MARKET_DATA_DIR", default=VAR_DIR / "data")
MARKET_RETENTION_DAYS = env.int("MARKET_RETENTION_DAYS", default=3)
# The recorded sample CSV that import_sample / ml_report read when no --csv is given ("" = the bundled one).
MARKET_SAMPLE_CSV = env("MARKET_SAMPLE_CSV", default="")
# Collector: seconds between day-file segments (a crash loses at most this much); S3 key prefix of uploads.
MARKET_FLUSH_INTERVAL = env.float("MARKET_FLUSH_INTERVAL", default=2.0)
MARKET_UPLOAD_PREFIX = env("MARKET_UPLOAD_PREFIX", default="marketdata")
# Send each second's new snapshots to the ML worker (mlmodel.tasks.ingest_market_data) for live predictions.
MARKET_PREDICTION_FEED = env.bool("MARKET_PREDICTION_FEED", default=True)
# Price levels per side in that feed (models may use at most this many; the default feature set uses 10).
MARKET_PREDICTION_LEVELS = env.int("MARKET_PREDICTION_LEVELS", default=15)
# Live fan-out (market/fanout.py, market/consumers.py): publish each market at most every N ms (latest wins),
# send each browser at most every N ms, top N order-book levels per side.
MARKET_FANOUT_INTERVAL_MS = env.int("MARKET_FANOUT_INTERVAL_MS", default=50)
MARKET_WS_THROTTLE_MS = env.int("MARKET_WS_THROTTLE_MS", default=50)
# An open /ws/user/ socket re-reads its session this often (and on each ping); gone -> closed with 4401.
WS_SESSION_RECHECK_S = env.float("WS_SESSION_RECHECK_S", default=10.0)
# The /trade page marks the market "stale" (closed or feed interrupted) after this long without an update.
DASHBOARD_STALE_AFTER_S = env.int("DASHBOARD_STALE_AFTER_S", default=10)
MARKET_FANOUT_LEVELS = env.int("MARKET_FANOUT_LEVELS", default=15)
# Public market-data REST API: requests per client (user, else IP).
MARKET_API_RATE = env("MARKET_API_RATE", default="300/min")
# Other exchanges' BTC tickers (public REST) and the FX source used to convert them to KRW. The FX endpoint
# returns {"base"|"base_code": "USD", "rates": {"KRW": .., "JPY": ..}} (ExchangeRate-API's open endpoint).
# USDT is priced with Upbit's KRW-USDT when MARKET_USDT_SOURCE=upbit and it answers, else as 1 USDT = 1 USD.
BITFLYER_API_URL = env("BITFLYER_API_URL", default="https://api.bitflyer.com")
BINANCE_API_URL = env("BINANCE_API_URL", default="https://api.binance.com")
OKX_API_URL = env("OKX_API_URL", default="https://www.okx.com")
FX_SOURCE_URL = env("FX_SOURCE_URL", default="https://open.er-api.com/v6/latest/USD")
FX_SOURCE_NAME = env("FX_SOURCE_NAME", default="ExchangeRate-API (open.er-api.com)")  # a name, in no language
MARKET_USDT_SOURCE = env("MARKET_USDT_SOURCE", default="upbit")
EXCHANGES_CACHE_SECONDS = env.int("EXCHANGES_CACHE_SECONDS", default=10)
FX_CACHE_SECONDS = env.int("FX_CACHE_SECONDS", default=3600)
FEEDS_HTTP_TIMEOUT = env.float("FEEDS_HTTP_TIMEOUT", default=4.0)
# Bitcoin news (RSS/Atom), refreshed by market.tasks.refresh_news.
NEWS_FEEDS = env.list(
    "NEWS_FEEDS",
    default=[
        "https://www.coindesk.com/arc/outboundfeeds/rss/",
        "https://cointelegraph.com/rss/tag/bitcoin",
        "https://bitcoinmagazine.com/.rss/full/",
    ],
)
NEWS_REFRESH_SECONDS = env.int("NEWS_REFRESH_SECONDS", default=600)
NEWS_KEEP_DAYS = env.int("NEWS_KEEP_DAYS", default=30)
# Parsed once, here: every user of the fee reads this Decimal (a fraction per side, charged in KRW); the
# default is Upbit's published KRW-market fee (market.upbit.protocol.FEE_RATE, which the simulator charges).
UPBIT_FEE_RATE = Decimal(env("UPBIT_FEE_RATE", default=str(_upbit_protocol.FEE_RATE)))
UPBIT_MIN_ORDER_KRW = env.int("UPBIT_MIN_ORDER_KRW", default=5000)

# Periodic tasks (observator/settings/celery.py assembles CELERY_BEAT_SCHEDULE): finished days uploaded at
# MARKET_UPLOAD_AT (local time), retention every hour, the news every NEWS_REFRESH_SECONDS.
_upload_h, _upload_m = (int(x) for x in env("MARKET_UPLOAD_AT", default="00:05").split(":"))
market_beat_schedule = {
    "market-upload-finished-days": {
        "task": "market.tasks.upload_finished_days",
        "schedule": crontab(hour=_upload_h, minute=_upload_m),
    },
    "market-retention": {"task": "market.tasks.apply_retention", "schedule": crontab(minute=30)},
    "market-refresh-news": {"task": "market.tasks.refresh_news", "schedule": float(NEWS_REFRESH_SECONDS)},
}
