"""``manage.py collect``: stream Upbit books, trades and tickers to day files, the fan-out and the ML feed.

With ``REDIS_URL`` (or ``--leases on``) any number of these processes, on any hosts, split the market list
through Redis leases (market/leases.py): start the same command with the same markets on each. Without
Redis (the embedded default) one process collects every market.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from market import leases
from market.collector import celery_prediction_sink, collect
from market.fanout import MarketFanout
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
        parser.add_argument(
            "--leases",
            choices=("auto", "on", "off"),
            default="auto",
            help="share the markets with other collectors through Redis leases (auto: when REDIS_URL is set)",
        )
        parser.add_argument("--redis-url", help="Redis for the leases (default: settings.REDIS_URL)")
        parser.add_argument(
            "--lease-ttl", type=float, default=leases.DEFAULT_TTL_S, help="seconds a lease lives unrenewed"
        )
        parser.add_argument(
            "--lease-renew", type=float, default=leases.DEFAULT_RENEW_S, help="seconds between renewals"
        )
        parser.add_argument(
            "--lease-namespace",
            help="Redis key prefix: collectors with the same one share markets (default: one per feed URL)",
        )

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
            flush = float(settings.MARKET_FLUSH_INTERVAL)
        if flush <= 0:
            raise CommandError("--flush-interval must be positive")

        ws_url = opts["ws_url"] or settings.UPBIT_WS_URL
        redis_url = opts["redis_url"] or settings.REDIS_URL
        lease_manager = None
        if opts["leases"] == "on" or (opts["leases"] == "auto" and redis_url):
            if not redis_url:
                raise CommandError("--leases on needs Redis: set REDIS_URL or --redis-url")
            try:
                lease_manager = leases.LeaseManager(
                    redis_url=redis_url,
                    markets=codes,
                    namespace=opts["lease_namespace"] or leases.namespace_for(ws_url),
                    ttl_s=opts["lease_ttl"],
                    renew_s=opts["lease_renew"],
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc

        fanout = None
        if not opts["no_fanout"]:
            fanout = MarketFanout()
        sink = None
        if settings.MARKET_PREDICTION_FEED and not opts["no_predictions"]:
            sink = celery_prediction_sink()
        shard = f", sharded as {lease_manager.me}" if lease_manager is not None else ""
        self.stdout.write(f"collecting {len(codes)} market(s) from {ws_url}{shard}")
        collector = asyncio.run(
            collect(
                codes=codes,
                ws_url=ws_url,
                data_dir=opts["data_dir"] or settings.MARKET_DATA_DIR,
                flush_interval=flush,
                fanout=fanout,
                prediction_sink=sink,
                leases=lease_manager,
            )
        )
        self.stdout.write(f"collector stopped: {collector.counts}")
