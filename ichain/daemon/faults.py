"""Fault injection for the crash tests: die by SIGKILL at named points of the daemon's work.

``ICHAIN_KILL_AT`` holds comma-separated point names; ``ICHAIN_KILL_LOG`` a file where each point
that fired is appended *before* the kill, so a supervisor restarting the daemon moves on to the
next point (each point fires once). Without these variables :func:`point` costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: Every point the daemon passes through for one task, in order (provider then validator side).
POINTS = (
    "ingest-before-commit",   # events read, checkpoint not yet committed
    "ingest-after-commit",    # checkpoint committed, no job started
    "job-start",
    "task-fetch-start",
    "task-fetched",           # task archive on disk, not yet verified
    "task-unpacked",
    "executed",               # sandbox done, output folder written
    "prechecked",             # the task's validate mode ran on our own result
    "result-packed",          # result archive written, hash recorded
    "result-offered",         # hosted for the requester (and validator)
    "submit-before-journal",
    "submit-after-journal",   # nonce journaled, transaction not sent
    "submit-after-send",      # transaction mined, outcome not journaled
    "submitted",              # outcome journaled
    "report-before-journal",  # a failing run: report sealed and kept, not journaled
    "report-after-journal",
    "report-after-send",
    "claim-before-journal",   # expire() of a task whose validator stayed silent (collateral back)
    "claim-after-journal",
    "claim-after-send",
    "withdraw-before-journal",
    "withdraw-after-journal",
    "withdraw-after-send",
    "done",
)


def _armed() -> tuple[set[str], Path | None]:
    wanted = {p.strip() for p in os.environ.get("ICHAIN_KILL_AT", "").split(",") if p.strip()}
    log = os.environ.get("ICHAIN_KILL_LOG")
    return wanted, Path(log) if log else None


def point(name: str) -> None:
    """SIGKILL this process at ``name`` if armed and not yet fired (see module docstring)."""
    wanted, log = _armed()
    if name not in wanted:
        return
    fired = set(log.read_text().split()) if log and log.exists() else set()
    if name in fired:
        return
    if log:
        with open(log, "a") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
