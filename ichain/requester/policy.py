"""What the requester does when the party a task waits for stays silent past its deadline.

A silent provider (the task still Pending or Executing after its deadline) means a refund: the whole
deposit comes back. A silent validator (Validating after its deadline) is replaced by the best other
available worker; when there is none, the task is refunded (expiring it from Validating refunds the whole
deposit too). :func:`assess` says which applies to a session now, :func:`recover` does it; the CLI's round
(:mod:`ichain.requester.flow`) recovers on its own, the web page offers the same choice on its actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ichain.errors import IChainError
from ichain.market import Status, Task
from ichain.requester.session import RequesterSession


class Recovery(Enum):
    """What to do about a task now."""

    NONE = "none"  #: Nothing overdue (or nothing the requester can do).
    REFUND = "refund"  #: Take the deposit back: cancel a pending task, expire an overdue one.
    REPLACE_VALIDATOR = "replace_validator"  #: Name another validator.


@dataclass(frozen=True)
class Advice:
    """The policy's answer for one task.

    Attributes:
        action: What to do.
        reason: What went wrong, in a few words for the user ("" when nothing is to be done).
        replacement: The validator to name (with ``REPLACE_VALIDATOR``).
    """

    action: Recovery
    reason: str = ""
    replacement: str | None = None


NOTHING = Advice(Recovery.NONE)


def advise(task: Task, now: int, replacement: str | None) -> Advice:
    """The policy itself, on the chain's facts.

    Args:
        task: The task as on chain.
        now: The chain's clock (:meth:`ichain.market.Market.now`).
        replacement: The best other worker that could validate (None when there is none).
    """
    if now <= task.deadline:
        return NOTHING
    if task.status == Status.Pending:
        return Advice(Recovery.REFUND, "no provider took the task before its deadline")
    if task.status == Status.Executing:
        return Advice(Recovery.REFUND, "the provider missed its deadline")
    if task.status == Status.Validating:
        if replacement is None:
            return Advice(Recovery.REFUND, "the validator missed its deadline and no other validator is available")
        return Advice(Recovery.REPLACE_VALIDATOR, "the validator missed its deadline", replacement)
    return NOTHING


def assess(session: RequesterSession, task: Task) -> Advice:
    """The policy for ``session``'s task as it is now (``task``: its latest on-chain record)."""
    now = session.market.now()
    replacement = None
    if task.status == Status.Validating and now > task.deadline:
        ranked = session.rank_providers((task.provider, task.validator))
        replacement = ranked[0].address if ranked else None
    return advise(task, now, replacement)


def recover(session: RequesterSession) -> Advice:
    """Apply the policy to ``session``'s task; returns what was done.

    A replacement validator that can no longer be named (it left, a race) falls back to the refund.

    Raises:
        IChainError: The refund was refused (e.g. the deadline's very second): try again later.
    """
    advice = assess(session, session.refresh())
    if advice.action is Recovery.REPLACE_VALIDATOR and advice.replacement is not None:
        try:
            session.choose_validator(advice.replacement)
            return advice
        except IChainError as err:
            advice = Advice(Recovery.REFUND, f"{advice.reason} and {advice.replacement} can't take over ({err})")
    if advice.action is Recovery.REFUND:
        session.refund()
    return advice


__all__ = ["Advice", "Recovery", "advise", "assess", "recover"]
