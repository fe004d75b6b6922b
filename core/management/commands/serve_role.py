"""`manage.py serve_role --role web|worker|ml|beat|collector`: run one process of the stack in the foreground,
exactly as `runstack` would start it (same arguments, same environment), for hosts that run a role each
under their own supervisor (systemd, a container per role). See docs/ops/multi-host.md.

It replaces itself with the role's process (``exec``): the supervisor's signals reach it directly. The
collector role shares the markets with every other collector on the same Redis through leases; without
``REDIS_URL`` it collects every market (run only one then).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError

from core import launcher

ROLES = {"web": "web", "worker": "worker", "ml": "ml", "beat": "beat", "collector": "collector"}


def role_command(
    *, role: str, host: str, port: int, node: str = "", log_level: str = launcher.DEFAULT_CONSOLE_LEVEL
) -> tuple[list[str], dict[str, str]]:
    """The argument vector and the extra environment of ``role``, as the launcher builds them."""
    specs, shared = launcher.build_specs(
        host=host,
        port=port,
        simulate=False,
        sim_port=0,
        markets=settings.MARKET_CODES,
        available_commands=set(get_commands()),
        log_level=log_level,
        trusted_proxies=settings.TRUSTED_PROXIES,
    )
    spec = next(s for s in specs if s.name == ROLES[role])
    args = list(spec.args)
    if node and role in ("worker", "ml"):
        args[args.index("-n") + 1] = node  # two workers of a queue on one host need two node names
    # The launcher wraps nothing here (no parent-death stub): the host's supervisor owns the process.
    return args, dict(spec.env)


class Command(BaseCommand):
    help = (
        "Run one role of the stack (web, worker, ml, beat, collector) in the foreground, as runstack would."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--role", required=True, choices=sorted(ROLES))
        parser.add_argument("--host", default="127.0.0.1", help="web: address to listen on")
        parser.add_argument(
            "--port", type=int, default=8000, help="web: port; every role: names var/metrics/<port>"
        )
        parser.add_argument("--node", default="", help="worker/ml: Celery node name (default queue@%%h)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            log_level = launcher.console_level(os.environ)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        argv, env = role_command(
            role=opts["role"], host=opts["host"], port=opts["port"], node=opts["node"], log_level=log_level
        )
        # Values the operator set win over the launcher's defaults (e.g. PROMETHEUS_MULTIPROC_DIR).
        environ = {**env, **os.environ, "PYTHONUNBUFFERED": "1"}
        environ.setdefault("OBSERVATOR_ROLE", env.get("OBSERVATOR_ROLE", opts["role"]))
        self.stdout.write(f"{opts['role']}: {' '.join(argv[1:4])} ...")
        self.stdout.flush()
        os.execvpe(argv[0], argv, environ)
