"""Whether a provider daemon is running now: a pid file next to its state file.

The daemon writes ``daemon-<chain id>.pid`` in its account folder when it starts and removes it when it stops.
A daemon killed with SIGKILL (or a machine that lost power) leaves the file behind, so a reader never trusts
the file alone: the process must exist and, where ``/proc`` tells, have started when the file says it did (a
pid the system gave to another process since is not our daemon).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ichain.files import write_json_atomic
from ichain.procs import proc_stat, start_ticks


def pid_file(account_dir: Path, chain_id: int) -> Path:
    """The pid file of one account's daemon on one chain (next to its state file)."""
    return Path(account_dir) / f"daemon-{int(chain_id)}.pid"


def write_pid(path: Path) -> None:
    """Record the current process as the running daemon (replacing a file a dead daemon left)."""
    write_json_atomic(path, {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()), "started": time.time()})


def remove_pid(path: Path) -> None:
    """Remove the pid file if it names the current process (a newer daemon's file is left alone)."""
    record = read_pid(path)
    if record is not None and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def read_pid(path: Path) -> dict[str, Any] | None:
    """The pid file's record (``pid``, ``start_ticks``, ``started``), or None when absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def running_daemon(path: Path) -> dict[str, Any] | None:
    """The record of the daemon that is running now according to ``path``, or None (no file, or a stale one).

    Args:
        path: The pid file (see :func:`pid_file`).
    """
    record = read_pid(path)
    if record is None:
        return None
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user (a service account)
    fields = proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return None  # dead, waiting for its parent to reap it
    ticks = start_ticks(pid, fields)
    if ticks is not None and record.get("start_ticks") is not None and ticks != record["start_ticks"]:
        return None  # the pid was reused by another process
    return record
