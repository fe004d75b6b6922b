"""The machine's process table (from /proc), for tests that check a stop leaves nothing behind."""

from __future__ import annotations

from pathlib import Path


def processes() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, pgid, state, command line) of every process on the machine."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0], cmdline)
    return table


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone: nothing of them runs)."""
    table = processes()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


def family(pgids: set[int]) -> set[int]:
    """Every live process in these process groups (a child and what it forked)."""
    return {pid for pid, (_p, pgid, state, _c) in processes().items() if pgid in pgids and state != "Z"}
