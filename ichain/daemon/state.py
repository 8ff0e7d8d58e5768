"""The provider daemon's persistent state: one SQLite file per account and chain.

What is kept, and why:

- ``meta``: the chain checkpoint (last block fully processed), the chain id and market address the
  file belongs to, the chunk host's port (locators on chain name it, so a restart re-binds it).
- ``blocks``: hashes of recent processed blocks, to notice a reorg and rescan from a safe depth.
- ``tasks``: one row per (task, role) this daemon has a part in, with the locators seen in events
  (they appear only in events, never in storage) and the furthest local stage reached.
- ``txs``: a journal of the transactions the daemon sends, written *before* sending, so that after
  a crash the same action is re-sent with the same nonce (a replacement, never a duplicate).

Event ingestion and the checkpoint advance in one SQLite transaction, so a daemon killed at any
point either saw a block's events and advanced, or did neither.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ichain.errors import IChainError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    stage TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (task_id, role)
);
CREATE TABLE IF NOT EXISTS txs (
    action TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    tx_hash TEXT,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
"""

# Stages a task goes through locally; DONE stages are never picked up again.
DONE_STAGES = ("done", "skipped", "refused")



def state_file(account_dir: Path, chain_id: int) -> Path:
    """The state file of one account's daemon on one chain (checkpoints, tasks and journal are per chain)."""
    return Path(account_dir) / f"daemon-{int(chain_id)}.sqlite"

class StateError(IChainError):
    """The daemon's state file can't be used (another chain, another market, corrupt)."""


@dataclass
class TaskRecord:
    """One task this daemon has a part in, as a provider or a validator.

    Attributes:
        task_id: The on-chain task id.
        role: ``provider`` or ``validator``.
        stage: The furthest local stage reached (``new``, ``fetched``, ``executed``, ``packed``,
            ``offered``, ``submitted``, ``failing``, ``reported``, ``claiming``, ``done``, ``skipped``,
            ``refused``...).
        data: Locators (hex), hashes, paths and notes gathered so far.
        updated: Unix time of the last change.
    """

    task_id: int
    role: str
    stage: str = "new"
    data: dict = field(default_factory=dict)
    updated: float = 0.0

    @property
    def active(self) -> bool:
        """Whether the daemon may still have work to do for this task."""
        return self.stage not in DONE_STAGES


class DaemonState:
    """SQLite-backed state of one provider daemon (thread-safe; WAL mode).

    Args:
        path: The SQLite file (created with its folder).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StateError(f"daemon state {self.path} is unusable: {err}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block of writes atomically (nested calls join the outer transaction)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """Return a JSON value stored under ``key``."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def bind(self, chain_id: int, market: str) -> None:
        """Tie this file to one chain and market; refuse a file that belongs to another.

        Raises:
            StateError: The file was written for another chain id or market address.
        """
        seen = self.get_meta("binding")
        want = {"chain_id": int(chain_id), "market": str(market).lower()}
        if seen is None:
            self.set_meta("binding", want)
        elif seen != want:
            raise StateError(
                f"state {self.path} belongs to chain {seen['chain_id']} market {seen['market']}, "
                f"not chain {want['chain_id']} market {want['market']}: use another --state-dir"
            )

    # --- checkpoint -------------------------------------------------------------------------
    @property
    def checkpoint(self) -> int | None:
        """The last block whose events are fully recorded (None before the first scan)."""
        return self.get_meta("checkpoint")

    def advance(self, block: int, block_hash: str, keep: int = 64) -> None:
        """Record that every event up to ``block`` is ingested (call inside the ingest transaction)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('checkpoint', ?)", (json.dumps(int(block)),))
            db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?)", (int(block), block_hash))
            db.execute("DELETE FROM blocks WHERE number < ?", (int(block) - keep,))

    def block_hash(self, number: int) -> str | None:
        """The hash recorded for a processed block, if still kept."""
        with self._lock:
            row = self._db.execute("SELECT hash FROM blocks WHERE number=?", (int(number),)).fetchone()
        return row[0] if row else None

    def rewind(self, block: int) -> None:
        """Move the checkpoint back to ``block`` (after a reorg); later blocks are forgotten."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('checkpoint', ?)", (json.dumps(int(block)),))
            db.execute("DELETE FROM blocks WHERE number > ?", (int(block),))

    # --- tasks ------------------------------------------------------------------------------
    def task(self, task_id: int, role: str) -> TaskRecord | None:
        """Return the record of one (task, role), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT task_id, role, stage, data, updated FROM tasks WHERE task_id=? AND role=?",
                (int(task_id), role),
            ).fetchone()
        return TaskRecord(row[0], row[1], row[2], json.loads(row[3]), row[4]) if row else None

    def tasks(self, active_only: bool = False) -> list[TaskRecord]:
        """All task records, oldest task first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, role, stage, data, updated FROM tasks ORDER BY task_id, role"
            ).fetchall()
        records = [TaskRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]
        return [r for r in records if r.active] if active_only else records

    def upsert_task(self, task_id: int, role: str, stage: str | None = None, **data: Any) -> TaskRecord:
        """Create or update a task record, merging ``data`` into what is known.

        A record never moves back from a done stage because an old event is replayed.
        """
        with self.transaction() as db:
            current = self.task(task_id, role)
            if current is None:
                current = TaskRecord(int(task_id), role, stage or "new", {}, 0.0)
            elif stage is not None and not current.active:
                stage = None  # replayed event after completion: keep it done
            current.data.update({k: v for k, v in data.items() if v is not None})
            if stage is not None:
                current.stage = stage
            current.updated = time.time()
            db.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?)",
                (current.task_id, role, current.stage, json.dumps(current.data), current.updated),
            )
        return current

    def set_stage(self, task_id: int, role: str, stage: str, **data: Any) -> TaskRecord:
        """Move a task to ``stage`` (even from a done stage) and merge ``data``."""
        with self.transaction() as db:
            current = self.task(task_id, role) or TaskRecord(int(task_id), role)
            current.data.update({k: v for k, v in data.items() if v is not None})
            current.stage = stage
            current.updated = time.time()
            db.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?)",
                (current.task_id, role, current.stage, json.dumps(current.data), current.updated),
            )
        return current

    # --- transaction journal ----------------------------------------------------------------
    def journal(self, action: str) -> dict | None:
        """The journal entry of an action (``nonce``, ``tx_hash``, ``status``), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT nonce, tx_hash, status, created FROM txs WHERE action=?", (action,)
            ).fetchone()
        if not row:
            return None
        return {"action": action, "nonce": row[0], "tx_hash": row[1], "status": row[2], "created": row[3]}

    def journal_all(self) -> list[dict]:
        """Every journal entry, by nonce."""
        with self._lock:
            rows = self._db.execute(
                "SELECT action, nonce, tx_hash, status, created FROM txs ORDER BY nonce"
            ).fetchall()
        return [dict(zip(("action", "nonce", "tx_hash", "status", "created"), r)) for r in rows]

    def journal_intent(self, action: str, nonce: int) -> None:
        """Record, before sending, that ``action`` goes out with ``nonce``."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO txs VALUES (?, ?, NULL, 'sending', ?)", (action, int(nonce), time.time())
            )

    def journal_result(self, action: str, status: str, tx_hash: str | None = None) -> None:
        """Record how a journaled action ended (``mined``, ``reverted``, ``refused``, ``moot``), or that its
        transaction went out but is not mined (``sending`` with its hash)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE txs SET status=?, tx_hash=COALESCE(?, tx_hash) WHERE action=?", (status, tx_hash, action)
            )

    def summary(self) -> dict:
        """A JSON-able snapshot for `ape ichain status` and the web page."""
        records = self.tasks()
        return {
            "checkpoint": self.checkpoint,
            "port": self.get_meta("port"),
            "binding": self.get_meta("binding"),
            "offer": self.get_meta("offer"),
            "tasks": [
                {"task_id": r.task_id, "role": r.role, "stage": r.stage, "updated": r.updated,
                 **{k: v for k, v in r.data.items() if k in ("result_hash", "accepted", "error", "exit_code",
                                                             "wall_time", "paid", "reason", "failed_stage")}}
                for r in records
            ],
            "transactions": self.journal_all(),
        }
