"""A source that is down is reported once by the whole embedded stack, not once per process: the web server,
the worker's pool processes and the collector each fetch feeds (seen: every news feed warned twice, ten
minutes apart, as the two pool processes of the default worker took the refresh in turn)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import live

NOTE = """
import logging, sys
import django
django.setup()
from market.outages import source_down_note, source_up_note
log = logging.getLogger("probe")
log.propagate = False
log.setLevel(logging.DEBUG)
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
log.addHandler(handler)
key = "news:https://example.invalid/rss"
if sys.argv[1] == "down":
    source_down_note(key=key, reason="network error", logger=log)
else:
    source_up_note(key=key, logger=log)
"""


def note(tmp_path: Path, what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "observator.settings.local", "OBSERVATOR_VAR_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", NOTE, what], cwd=live.ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    return out.stdout


def test_a_source_down_is_warned_once_by_all_processes_and_its_return_once(tmp_path: Path) -> None:
    outputs = [note(tmp_path, "down") for _ in range(3)]  # three processes, one after another
    assert sum(o.count("WARNING feed news:https://example.invalid/rss unavailable") for o in outputs) == 1
    back = [note(tmp_path, "up") for _ in range(2)]
    assert sum(o.count("is back") for o in back) == 1
    assert "unavailable" in note(tmp_path, "down")  # down again after it was back: a new warning
