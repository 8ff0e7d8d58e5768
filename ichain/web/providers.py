"""The provider dashboard: market record, rating, earnings and the provider daemon's own state.

Counts and earnings are derived from the market's events (the chain is the truth), read
incrementally from a cursor so a page refresh costs one ``eth_getLogs`` over the new blocks only.
The daemon's state comes from the service's ``daemon_state`` report (``ape ichain web`` reads it
through the daemon's own command), so the page knows nothing of the daemon's files.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichain.errors import IChainError
from ichain.market import (
    Market,
    MarketEvent,
    ResultSubmitted,
    TaskDeclined,
    TaskExpired,
    TaskFailed,
    VerdictSubmitted,
)

if TYPE_CHECKING:
    from ichain.web.service import WebService

#: Jobs of the daemon listed on the dashboard (most recent first).
JOBS_SHOWN = 20


@dataclass
class _Tally:
    run: set[int] = field(default_factory=set)
    validated: set[int] = field(default_factory=set)
    earned: int = 0
    history: dict[tuple[int, str], dict] = field(default_factory=dict)  # (task_id, role) -> {status, amount}


class EventTally:
    """Per-worker counts and earnings folded from market events, advanced incrementally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_block = 0
        self._by_worker: dict[str, _Tally] = defaultdict(_Tally)
        self._collateral: dict[int, tuple[str, int]] = {}  # task id -> (provider, collateral posted)

    def update(self, market: Market) -> None:
        """Fold the events of the blocks mined since the last call."""
        from ape import chain

        with self._lock:
            head = chain.blocks.head.number
            if head is None or head < self._next_block:
                return
            for ev in market.events(self._next_block, head):
                self._fold(ev)
            self._next_block = head + 1

    def get(self, address: str) -> _Tally:
        """The tally of one worker (empty when it never worked)."""
        with self._lock:
            return self._by_worker[address]

    def _fold(self, ev: MarketEvent) -> None:
        if isinstance(ev, ResultSubmitted):
            t = self._by_worker[ev.provider]
            t.run.add(ev.task_id)
            self._collateral[ev.task_id] = (ev.provider, int(ev.collateral))
            t.history[(ev.task_id, "provider")] = {"status": "Validating", "amount": 0}
        elif isinstance(ev, TaskFailed):
            t = self._by_worker[ev.provider]
            t.run.add(ev.task_id)
            t.earned += int(ev.provider_paid)  # the failure fee
            t.history[(ev.task_id, "provider")] = {"status": "Failed", "amount": int(ev.provider_paid)}
        elif isinstance(ev, VerdictSubmitted):
            t = self._by_worker[ev.validator]
            t.validated.add(ev.task_id)
            t.earned += int(ev.validator_paid)
            verdict = "Completed" if ev.accepted else "Rejected"
            t.history[(ev.task_id, "validator")] = {"status": verdict, "amount": int(ev.validator_paid)}
            provider, collateral = self._collateral.get(ev.task_id, (None, 0))
            if provider is not None:
                # On accept the provider's payout includes its collateral back: only the rest is earned.
                earned = max(int(ev.provider_paid) - collateral, 0) if ev.accepted else 0
                self._by_worker[provider].earned += earned
                row = self._by_worker[provider].history.setdefault((ev.task_id, "provider"), {})
                row.update(status=verdict, amount=earned)
        elif isinstance(ev, TaskDeclined):
            # given back before any result: nothing run, nothing earned
            t = self._by_worker[ev.provider]
            t.history[(ev.task_id, "provider")] = {"status": "Declined", "amount": 0}
        elif isinstance(ev, TaskExpired) and ev.provider is not None:
            # A timeout pays nobody for work: at most the provider's collateral comes back.
            expired = self._by_worker[ev.provider].history.get((ev.task_id, "provider"))
            if expired is not None:
                expired.update(status="Expired", amount=0)


def host_alive(port: Any, host: str = "127.0.0.1") -> bool:
    """Whether the daemon's chunk host answers its health check (the daemon runs while it serves)."""
    if not port:
        return False
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{int(port)}/health", timeout=0.5) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def provider_view(service: WebService, address: str) -> dict:
    """The provider dashboard's data for one (checksummed) address."""
    market = service.market()
    worker = market.worker(address)
    row = service.worker_row(worker)
    tally = service.tally
    tally.update(market)
    t = tally.get(address)
    view: dict[str, Any] = {
        "address": address,
        "registered": worker.registered,
        "price": row["price"],
        "rating": row["rating"],
        "ratings": row["ratings"],
        "score": row["score"],
        "validator_score": row["validator_score"],
        "validator_ratings": row["validator_ratings"],
        "missed": row["missed"],
        "trusted": market.trusted_validators(address) if worker.registered else [],
        "available": row["available"],
        "credit": market.credit(address),
        "earned": t.earned,
        "tasks_run": len(t.run),
        "tasks_validated": len(t.validated),
        "history": [{"task_id": k[0], "role": k[1], **v} for k, v in sorted(t.history.items(), reverse=True)],
        "daemon": None,
        "daemon_note": "",
    }
    try:
        d = service.daemon_state(address) if service.daemon_state is not None else None
    except IChainError as err:
        view["daemon_note"] = f"The daemon's state can't be read: {err}"
        return view
    if d is None:
        view["daemon_note"] = (f"No daemon state for this address under {service.config.state_dir}: "
                               "start `ape ichain provide` with this account on this machine.")
        return view
    from ape import chain

    head = chain.blocks.head.number
    running = host_alive(d["port"], service.config.host)
    facts = [("State file", Path(d["file"]).name),
             ("Checkpoint", f"block {d['checkpoint']} of {head}" if d["checkpoint"] is not None else "not scanned yet"),
             ("Chunk host port", d["port"] or "–"),
             ("Transactions sent", len(d["transactions"])),
             ("Last activity", time.strftime("%H:%M:%S", time.localtime(d["last_seen"])))]
    jobs = sorted(d["tasks"], key=lambda j: -j["updated"])[:JOBS_SHOWN]
    view["daemon"] = {"running": running, "facts": facts,
                      "jobs": [{"task_id": j["task_id"], "role": j["role"], "stage": j["stage"],
                                "updated": time.strftime("%H:%M:%S", time.localtime(j["updated"]))} for j in jobs]}
    return view
