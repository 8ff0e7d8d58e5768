"""What the requester does when the party a task waits for stays silent past its deadline.

Every timeout settles against the silent party, so the requester's answer is always the same: take the deposit
back. A task still Pending after its deadline is cancelled; Executing past its deadline (the provider neither
committed a result nor reported a failure) or Validating past its deadline (the validator never judged) is
expired: the requester gets price + fee back (from Validating the provider also gets its collateral back and the
validator's record counts a missed verdict). There is no validator to replace and nothing to finalize in
protocol v2. :func:`assess` says which applies to a session now, :func:`recover` does it; the CLI's round
(:mod:`ichain.requester.flow`) recovers on its own, the web page offers the same refund on its actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ichain.market import Status, Task
from ichain.requester.session import RequesterSession


class Recovery(Enum):
    """What to do about a task now."""

    NONE = "none"  #: Nothing overdue (or nothing the requester can do).
    REFUND = "refund"  #: Take the deposit back: cancel a pending task, expire an overdue one.


@dataclass(frozen=True)
class Advice:
    """The policy's answer for one task.

    Attributes:
        action: What to do.
        reason: What went wrong, in a few words for the user ("" when nothing is to be done).
    """

    action: Recovery
    reason: str = ""


NOTHING = Advice(Recovery.NONE)

#: Why each open status past its deadline is refunded.
_REASONS = {
    Status.Pending: "no provider took the task before its deadline",
    Status.Executing: "the provider missed its deadline",
    Status.Validating: "the validator missed its deadline",
}


def advise(task: Task, now: int) -> Advice:
    """The policy itself, on the chain's facts.

    Args:
        task: The task as on chain.
        now: The chain's clock (:meth:`ichain.market.Market.now`).
    """
    if now <= task.deadline or task.status not in _REASONS:
        return NOTHING
    return Advice(Recovery.REFUND, _REASONS[task.status])


def assess(session: RequesterSession, task: Task) -> Advice:
    """The policy for ``session``'s task as it is now (``task``: its latest on-chain record)."""
    if task.status not in _REASONS:
        return NOTHING
    return advise(task, session.market.now())


def recover(session: RequesterSession) -> Advice:
    """Apply the policy to ``session``'s task; returns what was done.

    Raises:
        IChainError: The refund was refused (e.g. the deadline's very second): try again later.
    """
    advice = assess(session, session.refresh())
    if advice.action is Recovery.REFUND:
        session.refund()
    return advice


__all__ = ["Advice", "NOTHING", "Recovery", "advise", "assess", "recover"]
