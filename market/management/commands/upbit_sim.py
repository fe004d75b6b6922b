"""``manage.py upbit_sim``: run the local Upbit simulator (REST + WebSocket) for tests and the offline demo.

Examples::

    manage.py upbit_sim --port 8765 --source synthetic --markets KRW-BTC,KRW-ETH --seed 1
    manage.py upbit_sim --source replay --replay-path ../shared/data/upbit-krw-ada-2018 --speed 10
    manage.py upbit_sim --account-krw 10000000 --account-access-key demo-ak --account-secret-key demo-sk

Accounts are created through ``POST /_sim/accounts`` (see ``market.upbit_sim.server``) or at start with
``--account-*``. ``--signal-strength`` (env ``SIM_SIGNAL_STRENGTH``) plants predictable order flow in the
synthetic market (docs/simulator.md); the launcher turns it on for the demo.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from market.upbit_sim.server import SimConfig, run_simulator


class Command(BaseCommand):
    help = "Run the Upbit protocol simulator (synthetic order-book model or replay of recorded days)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--source", choices=["synthetic", "replay"], default="synthetic")
        parser.add_argument("--markets", default="KRW-BTC", help="comma-separated, e.g. KRW-BTC,KRW-ETH")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--speed", type=float, default=1.0, help="N-times real time; 0 = unpaced")
        parser.add_argument(
            "--replay-path", default=None, help="day-file root, or the sample CSV / its folder"
        )
        parser.add_argument("--no-loop", action="store_true", help="replay once instead of looping")
        parser.add_argument("--no-rate-limits", action="store_true")
        parser.add_argument(
            "--volatility",
            type=float,
            default=None,
            help="synthetic target 1-minute volatility of the mid as a fraction (default 0.00045)",
        )
        parser.add_argument(
            "--signal-strength",
            type=float,
            default=float(os.environ.get("SIM_SIGNAL_STRENGTH") or 0.0),
            help="synthetic: planted signal (announced price jumps), 0 = off (default: env "
            "SIM_SIGNAL_STRENGTH or 0; 1 = the demo's default; see docs/simulator.md)",
        )
        parser.add_argument("--tick-ms", type=int, default=50, help="publishing period in paced mode")
        parser.add_argument("--idle-timeout", type=float, default=120.0, help="WebSocket idle drop, seconds")
        parser.add_argument("--account-krw", default=None, help="create one account with this much KRW")
        parser.add_argument("--account-access-key", default=None)
        parser.add_argument("--account-secret-key", default=None)
        parser.add_argument("--account-assets", default="", help="e.g. BTC=0.5,ETH=2 for that account")

    def handle(self, *args: Any, **opts: Any) -> None:
        markets = [m.strip().upper() for m in str(opts["markets"]).split(",") if m.strip()]
        if not markets:
            raise CommandError("--markets is empty")
        if opts["source"] == "replay" and not opts["replay_path"]:
            raise CommandError("--source replay needs --replay-path")
        if opts["speed"] < 0:
            raise CommandError("--speed must be >= 0")
        if not 0 <= opts["signal_strength"] <= 5:
            raise CommandError("--signal-strength must be between 0 and 5")
        config = SimConfig(
            host=opts["host"],
            port=opts["port"],
            markets=markets,
            source=opts["source"],
            seed=opts["seed"],
            speed=opts["speed"],
            replay_path=opts["replay_path"],
            replay_loop=not opts["no_loop"],
            rate_limits={} if opts["no_rate_limits"] else None,
            tick_ms=opts["tick_ms"],
            ws_idle_timeout=opts["idle_timeout"],
            volatility=opts["volatility"],
            signal_strength=opts["signal_strength"],
        )
        if opts["account_krw"] is not None:
            if not (opts["account_access_key"] and opts["account_secret_key"]):
                raise CommandError("--account-krw needs --account-access-key and --account-secret-key")
            assets = {}
            for item in filter(None, (x.strip() for x in str(opts["account_assets"]).split(","))):
                cur, sep, amount = item.partition("=")
                if not sep:
                    raise CommandError(f"--account-assets item {item!r} is not CUR=amount")
                assets[cur.strip().upper()] = amount.strip()
            config.initial_accounts = [
                {
                    "assets": assets,
                    "krw": opts["account_krw"],
                    "access_key": opts["account_access_key"],
                    "secret_key": opts["account_secret_key"],
                }
            ]
        run_simulator(config)
