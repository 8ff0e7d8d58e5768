"""What the provider daemon does on each market event: record it, then wake the task's job.

Handlers run inside the runner's ingest transaction, so they only write to SQLite (idempotent
upserts: a replayed block after a crash or reorg changes nothing) and never call the chain.
Locators exist only in events, so this is where they are kept.

Protocol v2: a task names its validator when it is posted, so the validator's record starts at
``TaskPosted`` (with the requester's key, read from the task locator's envelope: the key the
validator seals the result to on accept) and its work starts at ``ResultSubmitted`` (the
provider's locator: the bundle of task and result, sealed to the validator).
"""

from __future__ import annotations

from typing import Callable

from ichain.daemon.runner import Runner
from ichain.daemon.state import DaemonState
from ichain.market import (
    ProviderAssigned,
    ResultSubmitted,
    TaskCancelled,
    TaskDeclined,
    TaskExpired,
    TaskFailed,
    TaskPosted,
    TaskRated,
    TrustChanged,
    VerdictSubmitted,
)
from ichain.transfer.envelope import Envelope, EnvelopeError

#: Makes one (task id, role) due now.
Wake = Callable[[int, str], None]


def envelope_key(locator: bytes) -> str | None:
    """The sender key (hex) of a locator's envelope, or None when the bytes are not an envelope (a pending
    task's empty locator, or junk: the job then refuses the task, the handler only records)."""
    if not locator:
        return None
    try:
        return Envelope.decode(bytes(locator)).sender_key.hex()
    except EnvelopeError:
        return None


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
            state.upsert_task(tid, "provider", task_hash=event.task_hash.hex(), locator=event.locator.hex(),
                              requester=event.requester, posted_block=event.block_number)
            wake(tid, "provider")
        elif state.task(tid, "provider") is None:
            # Keep the task hash of every task: a later ProviderAssigned naming us needs it.
            state.set_meta(f"hash:{tid}", event.task_hash.hex())
        if event.validator == me:
            state.upsert_task(tid, "validator", task_hash=event.task_hash.hex(), requester=event.requester,
                              requester_key=envelope_key(event.locator))
            wake(tid, "validator")

    @runner.on("ProviderAssigned")
    def provider_assigned(event: ProviderAssigned) -> None:
        tid = event.task_id
        if event.provider == me:
            state.upsert_task(tid, "provider", task_hash=state.get_meta(f"hash:{tid}"), locator=event.locator.hex(),
                              requester=event.requester, posted_block=event.block_number)
            wake(tid, "provider")
        if state.task(tid, "validator") is not None:
            # The pending task's requester key arrives with the provider's locator.
            state.upsert_task(tid, "validator", requester_key=envelope_key(event.locator))

    @runner.on("ResultSubmitted")
    def result_submitted(event: ResultSubmitted) -> None:
        tid = event.task_id
        if event.validator == me:
            state.upsert_task(tid, "validator", result_locator=event.validator_locator.hex(),
                              result_hash=event.result_hash.hex(), provider=event.provider,
                              requester=event.requester, deadline=event.deadline)
            wake(tid, "validator")
        if event.provider == me:
            wake(tid, "provider")

    @runner.on("TrustChanged")
    def trust_changed(event: TrustChanged) -> None:
        if event.provider == me:
            # What the chain says we trust (read by `ape ichain status`; the daemon asks trusts() before a run).
            state.set_meta(f"trust:{event.validator.lower()}", bool(event.trusted))

    @runner.on("TaskFailed", "VerdictSubmitted", "TaskRated", "TaskExpired", "TaskCancelled", "TaskDeclined")
    def settled(event: TaskFailed | VerdictSubmitted | TaskRated | TaskExpired | TaskCancelled | TaskDeclined) -> None:
        for role in ("provider", "validator"):
            if state.task(event.task_id, role) is not None:
                wake(event.task_id, role)
