"""A launcher over stand-in children, for tests/core/test_launcher.py (run as a script).

The children are small Python processes shaped like the stack's: one with a pool process (a grandchild in
its process group, like Celery's prefork pool), one that ignores SIGTERM and SIGINT, one whose grandchild
ignores SIGTERM and outlives it, and one that crashes every fraction of a second (always being restarted).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.launcher import PYTHON, ProcessSpec, Supervisor  # noqa: E402

# A grandchild in the child's process group that the child stops when it stops (a well-behaved pool).
# The handler is in place before the pool starts: a SIGTERM in between (the launcher killed just then, on a
# loaded box) would otherwise end the child by default and leave the pool running; one during the start
# stops the pool as soon as it exists. The handler runs once: the kernel sends the parent-death signal again
# for each of the launcher's threads that exits after the child was handed to it, and a second stop inside
# the first one's pool.wait() would block for good on the wait lock the first one holds.
POOL = """#child=pool
import os, signal, subprocess, sys, time
pool, told, stopping = None, False, False
def stop(*_):
    global told, stopping
    told = True
    if pool is None or stopping:  # told during the start (stopped right after it), or told again
        return
    stopping = True
    pool.terminate(); pool.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pool = subprocess.Popen([sys.executable, "-c", "#grandchild=pool\\nimport time\\ntime.sleep(600)"])
if told:
    stop()
print("pool ready", pool.pid, flush=True)
while True:
    time.sleep(0.2)
"""
# Ignores the polite signals: only the SIGKILL after the grace period ends it.
DEAF = """#child=deaf
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("deaf ready", flush=True)
while True:
    time.sleep(0.2)
"""
# Exits on SIGTERM at once, leaving behind a grandchild that ignores SIGTERM.
LEAKY = """#child=leaky
import signal, subprocess, sys, time
code = "#grandchild=leaky\\nimport signal as s, time\\ns.signal(s.SIGTERM, s.SIG_IGN)\\ntime.sleep(600)"
subprocess.Popen([sys.executable, "-c", code])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("leaky ready", flush=True)
while True:
    time.sleep(0.2)
"""
CRASHY = """#child=crashy
import time
time.sleep(0.3)
raise SystemExit(3)
"""


def main() -> int:
    specs = [
        ProcessSpec(name, [PYTHON, "-c", code])
        for name, code in (("pool", POOL), ("deaf", DEAF), ("leaky", LEAKY), ("crashy", CRASHY))
    ]
    supervisor = Supervisor(specs, grace=2.0, ready=lambda: "BANNER all children started")
    supervisor.install_signal_handlers()
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
