"""``manage.py upbit_sim`` as a real process: serves the API, creates its start-up account, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests

from market.upbit.protocol import build_jwt
from tests import live


def test_upbit_sim_command_serves_and_stops_cleanly(tmp_path) -> None:  # noqa: ANN001
    port = live.free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="observator.settings.test", PYTHONUNBUFFERED="1")
    args = [
        sys.executable,
        "manage.py",
        "upbit_sim",
        "--port",
        str(port),
        "--markets",
        "KRW-BTC,KRW-ETH",
        "--seed",
        "3",
        "--account-krw",
        "500000",
        "--account-assets",
        "BTC=0.25",
        "--account-access-key",
        "demo-ak",
        "--account-secret-key",
        "demo-sk",
    ]
    log = tmp_path / "sim.log"
    with live.running(args, env=env, log_path=log) as proc:
        live.wait_for_port(port, timeout=60, proc=proc)
        base = f"http://127.0.0.1:{port}"
        assert [m["market"] for m in requests.get(base + "/v1/market/all", timeout=5).json()] == [
            "KRW-BTC",
            "KRW-ETH",
        ]
        token = build_jwt("demo-ak", "demo-sk", None)
        rows = requests.get(
            base + "/v1/accounts", headers={"Authorization": f"Bearer {token}"}, timeout=5
        ).json()
        assert {r["currency"]: r["balance"] for r in rows} == {"KRW": "500000", "BTC": "0.25"}
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert "listening on http://127.0.0.1:" in text
    assert "demo-sk" not in text  # no secrets in logs


def test_upbit_sim_command_rejects_bad_arguments() -> None:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="observator.settings.test")
    r = subprocess.run(
        [sys.executable, "manage.py", "upbit_sim", "--source", "replay"],
        env=env,
        cwd=live.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "--replay-path" in r.stderr
