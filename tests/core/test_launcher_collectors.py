"""The launcher's collector shards: one collector per core with Redis (a flag or COLLECTOR_PROCESSES changes
it), always one without Redis; ``serve_role`` runs one role as the launcher would."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from core import launcher
from core.management.commands.runstack import _collector_count
from core.management.commands.serve_role import role_command


def _specs(collectors: int) -> list[launcher.ProcessSpec]:
    specs, _ = launcher.build_specs(
        host="127.0.0.1", port=8123, simulate=True, sim_port=8765, markets=["KRW-BTC", "KRW-ETH"],
        available_commands={"collect"}, collectors=collectors,
    )  # fmt: skip
    return specs


def test_n_collectors_share_the_markets_through_leases() -> None:
    specs = [s for s in _specs(3) if s.env.get("OBSERVATOR_ROLE") == "collector"]
    assert [s.name for s in specs] == ["collector-1", "collector-2", "collector-3"]
    for i, spec in enumerate(specs, 1):
        assert spec.args[spec.args.index("--leases") + 1] == "on"
        assert spec.args[spec.args.index("--markets") + 1] == "KRW-BTC,KRW-ETH"  # every shard, the same list
        assert spec.env["COLLECTOR_SHARD"] == str(i)  # the metrics' shard label
        assert spec.env["UPBIT_WS_URL"].endswith(":8765/websocket/v1")


def test_one_collector_keeps_its_name_and_all_markets() -> None:
    (spec,) = [s for s in _specs(1) if s.env.get("OBSERVATOR_ROLE") == "collector"]
    assert spec.name == "collector" and "--leases" not in spec.args


def test_collector_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLECTOR_PROCESSES", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert _collector_count(None, redis=True) == 4  # one per core
    assert _collector_count(None, redis=False) == 1  # embedded: nothing to share leases on
    assert _collector_count(2, redis=True) == 2
    monkeypatch.setenv("COLLECTOR_PROCESSES", "3")
    assert _collector_count(None, redis=True) == 3
    with pytest.raises(CommandError, match="REDIS_URL"):
        _collector_count(2, redis=False)
    with pytest.raises(CommandError, match="at least 1"):
        _collector_count(0, redis=True)
    monkeypatch.setenv("COLLECTOR_PROCESSES", "many")
    with pytest.raises(CommandError, match="whole number"):
        _collector_count(None, redis=True)


def test_serve_role_runs_what_the_launcher_runs(settings) -> None:  # noqa: ANN001
    settings.MARKET_CODES = ["KRW-BTC"]
    args, env = role_command(role="worker", host="127.0.0.1", port=8123, node="default-b@%h")
    assert args[args.index("-Q") + 1] == "default" and args[args.index("-n") + 1] == "default-b@%h"
    assert env["OBSERVATOR_ROLE"] == "worker" and env["PROMETHEUS_MULTIPROC_DIR"].endswith("8123")
    args, _ = role_command(role="collector", host="127.0.0.1", port=8123)
    assert args[-4:] == ["manage.py", "collect", "--markets", "KRW-BTC"]  # leases with REDIS_URL (auto)
    args, _ = role_command(role="web", host="0.0.0.0", port=9000)
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "9000"
