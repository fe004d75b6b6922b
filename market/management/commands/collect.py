"""``manage.py collect``: stream Upbit books, trades and tickers to day files, the fan-out and the ML feed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from market.collector import celery_prediction_sink, collect
from market.upbit.client import UpbitClient
from market.upbit.errors import UpbitError

logger = logging.getLogger(__name__)


def _krw_markets(rest_url: str) -> list[str]:
    with UpbitClient(base_url=rest_url) as client:
        return sorted(m["market"] for m in client.markets() if str(m.get("market", "")).startswith("KRW-"))


class Command(BaseCommand):
    help = "Collect Upbit market data (order book, trades, ticker) into day files until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--markets", help="comma-separated codes (default: settings.MARKET_CODES)")
        parser.add_argument("--all-krw", action="store_true", help="every KRW market in /v1/market/all")
        parser.add_argument("--data-dir", help="day-file root (default: settings.MARKET_DATA_DIR)")
        parser.add_argument("--ws-url", help="WebSocket URL (default: settings.UPBIT_WS_URL)")
        parser.add_argument("--rest-url", help="REST base URL (default: settings.UPBIT_REST_URL)")
        parser.add_argument("--flush-interval", type=float, default=None, help="seconds between segments")
        parser.add_argument("--no-fanout", action="store_true", help="do not publish live updates")
        parser.add_argument("--no-predictions", action="store_true", help="do not feed the ML worker")

    def handle(self, *args: Any, **opts: Any) -> None:
        rest_url = opts["rest_url"] or settings.UPBIT_REST_URL
        if opts["all_krw"]:
            try:
                codes = _krw_markets(rest_url)
            except UpbitError as exc:
                raise CommandError(f"could not list KRW markets: {exc.name}") from exc
        elif opts["markets"]:
            codes = [c.strip().upper() for c in opts["markets"].split(",") if c.strip()]
        else:
            codes = list(settings.MARKET_CODES)
        bad = [c for c in codes if "-" not in c]
        if not codes or bad:
            raise CommandError(f"market codes look like KRW-BTC; got {bad or 'none'}")
        flush = opts["flush_interval"]
        if flush is None:
            flush = float(getattr(settings, "MARKET_FLUSH_INTERVAL", 2.0))
        if flush <= 0:
            raise CommandError("--flush-interval must be positive")

        fanout = None
        if not opts["no_fanout"]:
            from market.fanout import MarketFanout

            fanout = MarketFanout()
        sink = None
        if settings.MARKET_PREDICTION_FEED and not opts["no_predictions"]:
            sink = celery_prediction_sink()
        self.stdout.write(f"collecting {len(codes)} market(s) from {opts['ws_url'] or settings.UPBIT_WS_URL}")
        collector = asyncio.run(
            collect(
                codes=codes,
                ws_url=opts["ws_url"] or settings.UPBIT_WS_URL,
                data_dir=opts["data_dir"] or settings.MARKET_DATA_DIR,
                flush_interval=flush,
                fanout=fanout,
                prediction_sink=sink,
            )
        )
        self.stdout.write(f"collector stopped: {collector.counts}")
