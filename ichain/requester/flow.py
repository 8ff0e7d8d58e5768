"""The requester's whole round on a prepared session: post, follow (recovering from silent parties), name
the validator, fetch and verify the result, finalize. ``ape ichain submit`` and ``ape ichain demo`` run it."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from ichain.errors import IChainError
from ichain.market import Status
from ichain.requester.format import eth, rating_text
from ichain.requester.policy import Recovery, recover
from ichain.requester.session import TERMINAL, RequestError, RequesterSession
from ichain.transfer.progress import FetchProgress

#: Opens a progress display for a download and yields its callback (e.g. :func:`ichain.transfer.progress_bar`).
ProgressDisplay = Callable[[str], ContextManager[Callable[[FetchProgress], None]]]


@dataclass(frozen=True)
class RoundResult:
    """How a round ended.

    Attributes:
        task_id: The on-chain task.
        status: Its status when the round stopped (Completed, Closed, Accepted/Rejected when not
            finalized, or Cancelled/Expired after a refund).
        result_dir: Where the verified result was unpacked (None without a result).
        metrics: The metrics the task wrote.
        rating: The rating given (None when not finalized).
        paid: Wei paid to the provider.
        refund: Wei credited back to the requester by a cancel or expiry.
    """

    task_id: int
    status: Status
    result_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    rating: int | None = None
    paid: int = 0
    refund: int = 0


def _no_progress(_label: str) -> ContextManager[Callable[[FetchProgress], None]]:
    return contextlib.nullcontext(lambda _p: None)


def run_round(
    session: RequesterSession,
    *,
    provider: str = "best",
    validator: str = "auto",
    price: int | None = None,
    validator_fee: int | None = None,
    timeout: int | None = None,
    rating: int | None = None,
    out: Path | None = None,
    wait_timeout: float = 900.0,
    finalize: bool = True,
    echo: Callable[[str], None] = print,
    progress: ProgressDisplay = _no_progress,
) -> RoundResult:
    """Post a prepared session's task and follow it to the end, recovering from silent parties.

    Args:
        session: A prepared (not yet posted) session.
        provider: An address or ``best``.
        validator: An address, ``auto`` (named at post) or ``later`` (the best one, after the result).
        price: Wei for the provider (default: its asking price).
        validator_fee: Wei for the validator (default: the validator's asking price).
        timeout: Seconds the provider has once named.
        rating: The rating to give (default 5 after an accept, 1 after a reject).
        out: Folder for the result (default ``./result-<task id>``).
        wait_timeout: Seconds to wait for each step.
        finalize: Rate and settle at the end (else stop with the result downloaded).
        echo: Where progress lines go.
        progress: Opens the display of the result's download.

    Raises:
        RequestError: A step did not happen within ``wait_timeout``.
        IChainError: A pre-check refused an action (one line).
    """
    market = session.market
    echo("providers (rating, then price):")
    for w in session.rank_providers():
        echo(f"  {w.address}  rating {rating_text(w)}  price {eth(w.price)}")
    named_validator = None if validator == "later" else validator
    fee = validator_fee
    if fee is None:
        chosen = session.pick(provider, (), "provider")
        val_addr = session.pick(named_validator or "auto", (chosen,), "validator")
        fee = market.worker(val_addr).price if val_addr else 0
    task_id = session.post(provider=provider, validator=named_validator, price=price, validator_fee=fee,
                           timeout=timeout)
    echo(f"posted task {task_id}: provider {session.data['provider']}, "
         f"validator {session.data.get('validator') or 'after the result'}, "
         f"deposit {eth(session.data['price'] + session.data['validator_fee'])}")
    if session.host is not None:
        echo(f"task hosted (encrypted) at {session.host.address}")

    def show(snap: dict) -> None:
        echo(f"  task {task_id}: {snap.get('chain_status')}")

    def follow(*targets: Status) -> Status:
        """Wait for ``targets``, applying the recovery policy whenever the awaited party is overdue."""
        end = time.time() + wait_timeout
        while True:
            try:
                return Status[session.wait_for(*targets, timeout=10, on_update=show)]
            except RequestError:
                if time.time() > end:
                    raise
            try:
                advice = recover(session)
            except IChainError as err:  # e.g. refused in the deadline's very second: try again next tick
                echo(f"  not yet: {err}")
                continue
            if advice.action is Recovery.REPLACE_VALIDATOR:
                echo(f"task {task_id}: {advice.reason}; validator {advice.replacement} named")
            elif advice.action is Recovery.REFUND:
                echo(f"task {task_id}: {advice.reason}; deposit taken back")
                return session.refresh().status

    status = follow(Status.AwaitingValidator, Status.Validating, Status.Accepted, Status.Rejected)
    if status == Status.AwaitingValidator:
        val = session.choose_validator("auto" if validator in ("later", "auto") else validator)
        echo(f"validator {val} named")
    if status not in TERMINAL:
        status = follow(Status.Accepted, Status.Rejected)
    if status not in (Status.Accepted, Status.Rejected):
        settled = session.data.get("settled", {})
        echo(f"task {task_id} ended {status.name}: refund {eth(settled.get('refund', 0))} credited "
             f"(ape ichain withdraw pays it out)")
        return RoundResult(task_id, status, refund=int(settled.get("refund", 0)))
    with progress("result (encrypted, in chunks)") as on_progress:
        dest = session.fetch_result(out or Path(f"result-{task_id}"), on_progress=on_progress)
    metrics = session.data.get("metrics", {})
    echo(f"result in {dest}: {json.dumps(metrics)}")
    echo(f"verdict: {status.name.lower()}")
    if not finalize:
        return RoundResult(task_id, status, dest, metrics)
    given = rating or (5 if status == Status.Accepted else 1)
    session.finalize(given)
    settled = session.data.get("settled", {})
    paid = int(settled.get("payout", 0))
    echo(f"finalized with rating {given}: provider paid {eth(paid)}" if status == Status.Accepted
         else f"closed with rating {given}: deposit price refunded to you")
    echo(f"provider {session.data['provider']} rating now {rating_text(market.worker(session.data['provider']))}")
    return RoundResult(task_id, session.refresh().status, dest, metrics, given, paid)


__all__ = ["RoundResult", "run_round"]
