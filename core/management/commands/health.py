"""`manage.py health --role X`: liveness of a process role on this host, for an orchestrator's probe.

Exit 0 when a live process of the role touched its heartbeat within ``--max-age`` seconds, else 1; one JSON
line says which processes beat and how long ago. Web: ``--role web`` asks ``/readyz`` too when ``--url`` is
given (the web beats on each readiness probe).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
from django.core.management.base import BaseCommand

from core import metrics


class Command(BaseCommand):
    help = "Exit 0 if a process of --role on this host is alive (fresh heartbeat), else 1."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--role", required=True, choices=metrics.ROLES)
        parser.add_argument("--max-age", type=float, default=metrics.HEARTBEAT_MAX_AGE)
        parser.add_argument("--url", default="", help="web only: base URL whose /readyz must answer 200")

    def handle(self, *args: Any, **opts: Any) -> None:
        result = metrics.health_check(role=opts["role"], max_age=opts["max_age"])
        if opts["role"] == "web" and opts["url"]:
            try:
                answer = httpx.get(opts["url"].rstrip("/") + "/readyz", timeout=5.0)
                result["readyz"] = answer.status_code
                result["ok"] = answer.status_code == 200
            except httpx.HTTPError as exc:
                result["readyz"], result["ok"] = type(exc).__name__, False
        self.stdout.write(json.dumps(result))
        sys.exit(0 if result["ok"] else 1)
