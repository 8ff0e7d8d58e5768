"""What the provider daemon does on each market event: record it, then wake the task's job.

Handlers run inside the runner's ingest transaction, so they only write to SQLite (idempotent
upserts: a replayed block after a crash or reorg changes nothing) and never call the chain.
Locators exist only in events, so this is where they are kept.
"""

from __future__ import annotations

from typing import Callable

from ichain.daemon.runner import Runner
from ichain.daemon.state import DaemonState
from ichain.market import (
    ProviderAssigned,
    ResultSubmitted,
    TaskCancelled,
    TaskExpired,
    TaskFinalized,
    TaskPosted,
    ValidatorAssigned,
    VerdictSubmitted,
)

#: Makes one (task id, role) due now.
Wake = Callable[[int, str], None]


def register_handlers(runner: Runner, me: str, state: DaemonState, wake: Wake) -> None:
    """Register the daemon's handlers on ``runner``.

    Args:
        runner: The daemon's event runner.
        me: The daemon's (checksummed) account address, as the SDK's events spell addresses.
        state: Where the handlers record what events say.
        wake: Called for every (task, role) an event concerns.
    """

    @runner.on("TaskPosted")
    def task_posted(event: TaskPosted) -> None:
        tid = event.task_id
        if event.provider == me:
            state.upsert_task(tid, "provider", task_hash=event.task_hash.hex(),
                              locator=event.provider_locator.hex(), posted_block=event.block_number)
            wake(tid, "provider")
        if event.validator == me:
            state.upsert_task(tid, "validator", task_hash=event.task_hash.hex(),
                              locator=event.validator_locator.hex())
            wake(tid, "validator")
        elif state.task(tid, "provider") is None:
            # Keep the task hash of every task: a later ProviderAssigned/ValidatorAssigned needs it.
            state.set_meta(f"hash:{tid}", event.task_hash.hex())

    @runner.on("ProviderAssigned")
    def provider_assigned(event: ProviderAssigned) -> None:
        if event.provider == me:
            state.upsert_task(event.task_id, "provider", task_hash=state.get_meta(f"hash:{event.task_id}"),
                              locator=event.locator.hex())
            wake(event.task_id, "provider")

    @runner.on("ValidatorAssigned")
    def validator_assigned(event: ValidatorAssigned) -> None:
        if event.validator == me:
            # Named after the result: the requester's envelope holds [task, result].
            loc = event.locator.hex()
            state.upsert_task(event.task_id, "validator", task_hash=state.get_meta(f"hash:{event.task_id}"),
                              locator=loc, result_locator=loc, result_hash=event.result_hash.hex())
            wake(event.task_id, "validator")

    @runner.on("ResultSubmitted")
    def result_submitted(event: ResultSubmitted) -> None:
        if event.validator == me:
            state.upsert_task(event.task_id, "validator", result_locator=event.validator_locator.hex(),
                              result_hash=event.result_hash.hex())
            wake(event.task_id, "validator")
        if event.provider == me:
            wake(event.task_id, "provider")

    @runner.on("VerdictSubmitted", "TaskFinalized", "TaskExpired", "TaskCancelled")
    def settled(event: VerdictSubmitted | TaskFinalized | TaskExpired | TaskCancelled) -> None:
        for role in ("provider", "validator"):
            if state.task(event.task_id, role) is not None:
                wake(event.task_id, role)
