"""`manage.py runstack`: run the whole stack in the foreground (web, workers, beat, collector, simulator)."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand

from core import launcher


class Command(BaseCommand):
    help = "Start web (ASGI), Celery workers (default, ml), beat and the collector; Ctrl-C stops all."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--sim-port", type=int, default=8765)
        parser.add_argument(
            "--demo", action="store_true", help="use the local Upbit simulator even if Upbit is up"
        )
        parser.add_argument("--no-fallback", action="store_true", help="never fall back to the simulator")
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="simulator only: N simulated seconds per wall second (e.g. 60: an hour in a minute)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        simulate = bool(opts["demo"] or settings.MARKET_SIMULATED)
        if not simulate and not opts["no_fallback"]:
            if launcher.upbit_reachable(settings.UPBIT_REST_URL):
                self.stdout.write(f"Upbit reachable at {settings.UPBIT_REST_URL}: live market data.")
            else:
                simulate = True
                self.stdout.write(
                    self.style.WARNING("Upbit cannot be reached: falling back to the local Upbit simulator.")
                )
        specs, _ = launcher.build_specs(
            host=opts["host"],
            port=opts["port"],
            simulate=simulate,
            sim_port=opts["sim_port"],
            markets=settings.MARKET_CODES,
            available_commands=set(get_commands()),
            sim_speed=opts["speed"],
        )
        supervisor = launcher.Supervisor(specs)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        self.stdout.write(f"OBservator on http://{opts['host']}:{opts['port']} (Ctrl-C stops everything)")
        self.stdout.flush()
        supervisor.run()
