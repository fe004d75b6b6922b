"""``manage.py trading_kill_switch engage|release|status``: the global kill switch from a shell."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from trading.selectors import kill_switch_engaged
from trading.services import kill_switch_engage, kill_switch_release


class Command(BaseCommand):
    help = "Engage (cancel all open orders, stop auto-trading, refuse orders), release, or show the switch."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["engage", "release", "status"])
        parser.add_argument("--reason", default="Engaged from the command line")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "engage":
            counts = kill_switch_engage(reason=options["reason"])
            self.stdout.write(f"engaged: {counts['cancelled']} orders cancelled, {counts['failed']} failed")
        elif options["action"] == "release":
            kill_switch_release()
            self.stdout.write("released")
        else:
            self.stdout.write("engaged" if kill_switch_engaged() else "off")
