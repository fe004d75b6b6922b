"""``manage.py import_sample``: the real Upbit KRW-ADA 2018 sample (CSV) as closed day files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from market import dayfiles
from market.uploads import sample_import

DEFAULT_SAMPLE = dayfiles.SAMPLE_CSV


class Command(BaseCommand):
    help = "Convert the real Upbit order-book sample CSV into day files (market KRW-ADA by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--csv", default=None, help="CSV path (default: $MARKET_SAMPLE_CSV or the shared sample)"
        )
        parser.add_argument("--market", default="KRW-ADA")
        parser.add_argument(
            "--data-dir", default=None, help="day-file root (default: settings.MARKET_DATA_DIR)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        csv_path = Path(opts["csv"] or settings.MARKET_SAMPLE_CSV or DEFAULT_SAMPLE)
        if not csv_path.is_file():
            raise CommandError(f"sample CSV not found: {csv_path}")
        market = opts["market"].strip().upper()
        if "-" not in market:
            raise CommandError("--market looks like KRW-ADA")
        try:
            counts = sample_import(csv_path=csv_path, market=market, root=opts["data_dir"])
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"could not import {csv_path.name}: {exc}") from exc
        self.stdout.write(
            f"imported {counts['orderbook']} order-book snapshots and {counts['trade']} trades "
            f"for {market} over {counts['days']} day(s)"
        )
