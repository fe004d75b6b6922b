"""`manage.py runstack`: run the whole stack in the foreground (web, workers, beat, collector, simulator)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError

from celery_app import app as celery_app
from core import launcher, metrics
from core.tasks import PING


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
        parser.add_argument(
            "--collectors",
            type=int,
            default=None,
            help="collector processes sharing the markets through Redis leases (default with REDIS_URL: "
            "COLLECTOR_PROCESSES or one per CPU core; without Redis always 1)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            log_level = launcher.console_level(os.environ)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        collectors = _collector_count(opts["collectors"], redis=bool(settings.REDIS_URL))
        simulate = bool(opts["demo"] or settings.MARKET_SIMULATED)
        if not simulate and not opts["no_fallback"]:
            if launcher.upbit_reachable(settings.UPBIT_REST_URL):
                self.stdout.write(f"Upbit reachable at {settings.UPBIT_REST_URL}: live market data.")
            else:
                simulate = True
                self.stdout.write(
                    self.style.WARNING("Upbit cannot be reached: falling back to the local Upbit simulator.")
                )
        specs, shared = launcher.build_specs(
            host=opts["host"],
            port=opts["port"],
            simulate=simulate,
            sim_port=opts["sim_port"],
            markets=settings.MARKET_CODES,
            available_commands=set(get_commands()),
            sim_speed=opts["speed"],
            log_level=log_level,
            trusted_proxies=settings.TRUSTED_PROXIES,
            collectors=collectors,
        )
        metrics.metrics_dir_prepare(shared["PROMETHEUS_MULTIPROC_DIR"])
        local = "127.0.0.1" if opts["host"] in ("0.0.0.0", "::", "") else opts["host"]
        ready = launcher.readiness(
            url=f"http://{opts['host']}:{opts['port']}",
            health_url=f"http://{local}:{opts['port']}/healthz",
            queues=("default", "ml"),
            ping=_ping_worker,
        )
        self.stdout.flush()
        supervisor = launcher.Supervisor(specs, ready=ready)
        supervisor.install_signal_handlers()
        # The banner comes from the readiness check, once the web answers and both workers answer a ping.
        sys.exit(supervisor.run())


def _collector_count(flag: int | None, *, redis: bool) -> int:
    """How many collector processes: ``--collectors``, else ``COLLECTOR_PROCESSES``, else one per core
    with Redis (they split the markets through leases) and one without (nothing to share leases on)."""
    raw = flag if flag is not None else os.environ.get("COLLECTOR_PROCESSES") or None
    try:
        count = int(raw) if raw is not None else ((os.cpu_count() or 1) if redis else 1)
    except ValueError as exc:
        raise CommandError(f"COLLECTOR_PROCESSES must be a whole number, not {raw!r}") from exc
    if count < 1:
        raise CommandError("--collectors / COLLECTOR_PROCESSES must be at least 1")
    if count > 1 and not redis:
        raise CommandError("more than one collector needs REDIS_URL (they share the markets through leases)")
    return count


def _ping_worker(queue: str, deadline: float) -> bool:
    """Whether a worker on ``queue`` runs a ping before ``deadline`` (the broker may still be starting)."""
    while time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        try:
            result = celery_app.send_task(PING, queue=queue, expires=max(1.0, remaining))
            return result.get(timeout=max(0.1, min(remaining, 30.0))) == "pong"
        except Exception:  # noqa: BLE001 - broker not up yet, or no answer in time: ask again
            time.sleep(1.0)
    return False
