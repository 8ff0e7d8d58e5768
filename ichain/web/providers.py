"""The provider dashboard: market record, rating, earnings and the provider daemon's own state.

Counts and earnings are derived from the market's events (the chain is the truth), read
incrementally from a cursor so a page refresh costs one ``eth_getLogs`` over the new blocks only.
The daemon's state is read (read-only) from its SQLite file in the iChain state folder.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class _Tally:
    run: set = field(default_factory=set)
    validated: set = field(default_factory=set)
    earned: int = 0
    history: dict = field(default_factory=dict)  # (task_id, role) -> {status, amount}


class EventTally:
    """Per-worker counts and earnings folded from market events, advanced incrementally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_block = 0
        self._by_worker: dict[str, _Tally] = defaultdict(_Tally)

    def update(self, market: Any) -> None:
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
            return self._by_worker[address.lower()]

    def _fold(self, ev: Any) -> None:
        name = _event_name(ev)
        args = _event_args(ev)
        task_id = int(args.get("taskId", args.get("task_id", 0)) or 0)
        provider = str(args.get("provider", "") or "").lower()
        validator = str(args.get("validator", "") or "").lower()
        if name == "ResultSubmitted" and provider:
            t = self._by_worker[provider]
            t.run.add(task_id)
            t.history[(task_id, "provider")] = {"status": "Validating" if validator and int(validator, 16)
                                                else "AwaitingValidator", "amount": 0}
        elif name == "VerdictSubmitted" and validator:
            t = self._by_worker[validator]
            t.validated.add(task_id)
            fee = int(args.get("validatorFee", args.get("validator_fee", 0)) or 0)
            t.earned += fee
            accepted = bool(args.get("accepted"))
            t.history[(task_id, "validator")] = {"status": "Accepted" if accepted else "Rejected", "amount": fee}
            if provider and (task_id, "provider") in self._by_worker[provider].history:
                self._by_worker[provider].history[(task_id, "provider")]["status"] = (
                    "Accepted" if accepted else "Rejected")
        elif name == "TaskFinalized" and provider:
            paid = int(args.get("paid", 0) or 0)
            t = self._by_worker[provider]
            t.earned += paid
            row = t.history.setdefault((task_id, "provider"), {"status": "", "amount": 0})
            row.update(status="Completed" if paid else "Closed", amount=paid)
        elif name == "TaskExpired" and provider and int(provider, 16):
            payout = int(args.get("payout", 0) or 0)
            t = self._by_worker[provider]
            t.earned += payout
            row = t.history.setdefault((task_id, "provider"), {"status": "", "amount": 0})
            row.update(status="Expired", amount=payout)


def _event_name(ev: Any) -> str:
    for attr in ("event_name", "name", "event"):
        value = getattr(ev, attr, None)
        if isinstance(value, str):
            return value
    return type(ev).__name__


def _event_args(ev: Any) -> dict:
    for attr in ("event_arguments", "args"):
        value = getattr(ev, attr, None)
        if isinstance(value, dict):
            return value
    if hasattr(ev, "__dataclass_fields__"):
        return {k: getattr(ev, k) for k in ev.__dataclass_fields__}
    return dict(getattr(ev, "__dict__", {}))


def daemon_file(service: Any, address: str) -> Path | None:
    """Where the daemon of ``address`` keeps its SQLite state, if it has one here."""
    explicit = service.daemon_states.get(address.lower())
    if explicit is not None:
        return explicit if explicit.exists() else None
    folder = Path(service.config.state_dir) / address.lower()
    from ape import chain

    path = folder / f"daemon-{chain.chain_id}.sqlite"  # ichain.daemon.provider names it so
    return path if path.is_file() else None


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


def read_daemon(path: Path) -> dict:
    """Read a daemon's state file read-only (never blocks or changes the running daemon)."""
    uri = f"file:{path}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=1.0)
    try:
        meta = {k: v for k, v in db.execute("SELECT key, value FROM meta")}
        jobs = db.execute("SELECT task_id, role, stage, updated FROM tasks ORDER BY updated DESC LIMIT 20").fetchall()
        txs = db.execute("SELECT COUNT(*) FROM txs").fetchone()[0]
    finally:
        db.close()
    import json

    def value(key: str) -> Any:
        raw = meta.get(key)
        try:
            return json.loads(raw) if raw is not None else None
        except ValueError:
            return raw

    wal = path.with_name(path.name + "-wal")
    touched = max(os.path.getmtime(p) for p in (path, wal) if p.exists())
    heartbeat = value("heartbeat")
    last = float(heartbeat) if isinstance(heartbeat, (int, float)) else touched
    return {
        "checkpoint": value("checkpoint"),
        "port": value("port"),
        "transactions": txs,
        "last_seen": last,
        "jobs": [{"task_id": j[0], "role": j[1], "stage": j[2],
                  "updated": time.strftime("%H:%M:%S", time.localtime(j[3]))} for j in jobs],
    }


def provider_view(service: Any, address: str) -> dict:
    """The provider dashboard's data for one address."""
    market = service.market()
    worker = market.worker(address)
    registered = bool(getattr(worker, "registered", True)) if worker is not None else False
    row = service._worker_row(worker) if registered else {"price": 0, "rating": 0.0, "ratings": 0,
                                                          "available": False}
    tally: EventTally = service.__dict__.setdefault("_tally", EventTally())
    tally.update(market)
    t = tally.get(address)
    view: dict[str, Any] = {
        "address": address,
        "registered": registered,
        "price": row["price"],
        "rating": row["rating"],
        "ratings": row["ratings"],
        "available": row["available"],
        "credit": int(market.credit(address)),
        "earned": t.earned,
        "tasks_run": len(t.run),
        "tasks_validated": len(t.validated),
        "history": [{"task_id": k[0], "role": k[1], **v} for k, v in sorted(t.history.items(), reverse=True)],
        "daemon": None,
        "daemon_note": "",
    }
    path = daemon_file(service, address)
    if path is None:
        view["daemon_note"] = (f"No daemon state for this address under {service.config.state_dir}: "
                               "start `ape ichain provide` with this account on this machine.")
        return view
    try:
        d = read_daemon(path)
    except sqlite3.Error as err:
        view["daemon_note"] = f"The daemon's state {path} can't be read: {err}"
        return view
    from ape import chain

    head = chain.blocks.head.number
    running = host_alive(d["port"], service.config.host)
    facts = [("State file", path.name),
             ("Checkpoint", f"block {d['checkpoint']} of {head}" if d["checkpoint"] is not None else "not scanned yet"),
             ("Chunk host port", d["port"] or "–"),
             ("Transactions sent", d["transactions"]),
             ("Last activity", time.strftime("%H:%M:%S", time.localtime(d["last_seen"])))]
    view["daemon"] = {"running": running, "facts": facts, "jobs": d["jobs"]}
    return view
