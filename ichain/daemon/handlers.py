"""What the provider daemon does on each market event: record it, then wake the task's job.

Handlers run inside the runner's ingest transaction, so they only write to SQLite (idempotent
upserts: a replayed block after a crash or reorg changes nothing) and never call the chain.
Locators exist only in events, so this is where they are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ichain.daemon import faults
from ichain.daemon.provider import ZERO, as_bytes, field_of, same
from ichain.daemon.runner import Runner

if TYPE_CHECKING:
    from ichain.daemon.provider import ProviderDaemon


def _hex(value: Any) -> str:
    return as_bytes(value).hex()


def _task_id(event: Any) -> int:
    return int(field_of(event, "task_id", "taskId"))


def register_handlers(runner: Runner, daemon: "ProviderDaemon") -> Runner:
    """Register the daemon's handlers on ``runner`` and return it."""
    me = daemon.address
    state = daemon.state

    @runner.on("TaskPosted")
    def task_posted(event: Any) -> None:
        tid = _task_id(event)
        if same(field_of(event, "provider"), me):
            state.upsert_task(tid, "provider", task_hash=_hex(field_of(event, "task_hash", "taskHash")),
                              locator=_hex(field_of(event, "provider_locator", "providerLocator")),
                              posted_block=int(field_of(event, "block_number", default=0) or 0))
            daemon.wake(tid, "provider")
        if same(field_of(event, "validator"), me):
            state.upsert_task(tid, "validator", task_hash=_hex(field_of(event, "task_hash", "taskHash")),
                              locator=_hex(field_of(event, "validator_locator", "validatorLocator")))
            daemon.wake(tid, "validator")
        elif state.task(tid, "provider") is None:
            # Keep the task hash of every task: a later ProviderAssigned/ValidatorAssigned needs it.
            state.set_meta(f"hash:{tid}", _hex(field_of(event, "task_hash", "taskHash")))

    @runner.on("ProviderAssigned")
    def provider_assigned(event: Any) -> None:
        tid = _task_id(event)
        if same(field_of(event, "provider"), me):
            state.upsert_task(tid, "provider", task_hash=state.get_meta(f"hash:{tid}"),
                              locator=_hex(field_of(event, "locator")))
            daemon.wake(tid, "provider")

    @runner.on("ValidatorAssigned")
    def validator_assigned(event: Any) -> None:
        tid = _task_id(event)
        if same(field_of(event, "validator"), me):
            # Named after the result: the requester's envelope holds [task, result].
            loc = _hex(field_of(event, "locator"))
            state.upsert_task(tid, "validator", task_hash=state.get_meta(f"hash:{tid}"), locator=loc,
                              result_locator=loc,
                              result_hash=_hex(field_of(event, "result_hash", "resultHash")))
            daemon.wake(tid, "validator")

    @runner.on("ResultSubmitted")
    def result_submitted(event: Any) -> None:
        tid = _task_id(event)
        if same(field_of(event, "validator"), me) and not same(field_of(event, "validator"), ZERO):
            state.upsert_task(tid, "validator",
                              result_locator=_hex(field_of(event, "validator_locator", "validatorLocator")),
                              result_hash=_hex(field_of(event, "result_hash", "resultHash")))
            daemon.wake(tid, "validator")
        if same(field_of(event, "provider"), me):
            daemon.wake(tid, "provider")

    @runner.on("VerdictSubmitted", "TaskFinalized", "TaskExpired", "TaskCancelled")
    def settled(event: Any) -> None:
        tid = _task_id(event)
        for role in ("provider", "validator"):
            if state.task(tid, role) is not None:
                daemon.wake(tid, role)

    # Crash points around the checkpoint commit (the ingest transaction is open here).
    original = runner.dispatch

    def dispatch(events: Any) -> int:
        handled = original(events)
        if handled:
            faults.point("ingest-before-commit")
        return handled

    runner.dispatch = dispatch  # type: ignore[method-assign]
    return runner
