"""Processes on this machine as Linux's ``/proc`` describes them: their state and when they started.

A pid alone does not name a process for long: once it exits, the system may give the number to another one. The
start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``) told together with the pid does. The
sandbox labels its containers with it (to sweep those of dead processes) and the provider daemon writes it in its
pid file (so ``provider status`` does not take a reused pid for a running daemon).
"""

from __future__ import annotations

from pathlib import Path


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), None where unknown.

    Args:
        pid: The process id.
    """
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses: split after the last one.
    return stat[stat.rfind(")") + 2:].split()


def start_ticks(pid: int, fields: list[str] | None = None) -> int | None:
    """When the process started, in clock ticks since boot, None where unknown.

    Args:
        pid: The process id.
        fields: Its :func:`proc_stat` fields when already read (the file is then not read again).
    """
    fields = proc_stat(pid) if fields is None else fields
    try:
        return int(fields[19]) if fields else None  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None
