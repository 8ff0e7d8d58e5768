"""The requester's whole round on a prepared session: pick the provider and its trusted validator, post, follow
(recovering from silent parties), then fetch and verify the result after the accept, or show the failure
report, or the reject; rate only when the user gives a rating. ``ape ichain submit`` and ``ape ichain demo`` run
it."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from ichain.errors import IChainError
from ichain.market import Status
from ichain.requester.format import eth, rating_text, validator_text
from ichain.requester.policy import Recovery, recover
from ichain.requester.session import RATEABLE, SETTLED, RequestError, RequesterSession
from ichain.transfer.progress import FetchProgress

#: Opens a progress display for a download and yields its callback (e.g. :func:`ichain.transfer.progress_bar`).
ProgressDisplay = Callable[[str], ContextManager[Callable[[FetchProgress], None]]]

#: Asks the user for the ratings of a settled task: ``(status, provider, validator)`` -> ``(provider rating,
#: validator rating)``, or None to rate later. Never answers on the user's behalf.
AskRating = Callable[[Status, str, str], "tuple[int, int] | None"]


@dataclass(frozen=True)
class RoundResult:
    """How a round ended.

    Attributes:
        task_id: The on-chain task.
        status: Its status when the round stopped (Completed, Failed, Rejected, Rated, Cancelled, Expired,
            Declined).
        result_dir: Where the verified result was unpacked (None without a result).
        metrics: The metrics the task wrote.
        rating: The provider rating given (None when not rated).
        paid: Wei paid to the provider.
        refund: Wei credited back to the requester.
        failure: The opened failure report of a Failed task (exit code, stage, neutralised stderr tail).
    """

    task_id: int
    status: Status
    result_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    rating: int | None = None
    paid: int = 0
    refund: int = 0
    failure: dict | None = None


def _no_progress(_label: str) -> ContextManager[Callable[[FetchProgress], None]]:
    return contextlib.nullcontext(lambda _p: None)


def failure_lines(failure: dict) -> list[str]:
    """The lines that tell the user why a task failed (every field already neutralised by the session)."""
    if failure.get("error"):
        return [f"  {failure['error']}"]
    lines = [f"  stage {failure.get('stage')}, exit code {failure.get('exit_code')}"]
    if failure.get("error_line"):
        lines.append(f"  error: {failure['error_line']}")
    tail = [line for line in str(failure.get("stderr_tail") or "").splitlines() if line.strip()][-10:]
    if tail:
        lines.append("  stderr (last lines):")
        lines += [f"    {line}" for line in tail]
    return lines


def run_round(
    session: RequesterSession,
    *,
    provider: str = "best",
    validator: str = "auto",
    price: int | None = None,
    validator_fee: int | None = None,
    timeout: int | None = None,
    rating: int | None = None,
    validator_rating: int = 0,
    ask_rating: AskRating | None = None,
    out: Path | None = None,
    wait_timeout: float = 900.0,
    echo: Callable[[str], None] = print,
    progress: ProgressDisplay = _no_progress,
    confirm: Callable[[dict[str, Any]], bool] | None = None,
) -> RoundResult:
    """Post a prepared session's task and follow it to the end, recovering from silent parties.

    Args:
        session: A prepared (not yet posted) session.
        provider: An address or ``best`` (top provider score with a trusted validator available).
        validator: An address or ``auto`` (the best validator THAT provider trusts, asking at most the fee).
        price: Wei for the provider (default: its asking price).
        validator_fee: Wei for the validator (default: the validator's asking price).
        timeout: Seconds the provider has once named.
        rating: The provider rating to give once the task is Completed or Failed (None: ask, or rate later).
        validator_rating: The validator rating to give with it (0: not rated; always 0 on a failed task).
        ask_rating: Asks the user when ``rating`` is None (None: no prompt; the user rates later).
        out: Folder for the result (default ``./result-<task id>``).
        wait_timeout: Seconds to wait for each step.
        echo: Where progress lines go.
        progress: Opens the display of the result's download.
        confirm: Asked with the post's terms once every pre-check passed, before the deposit is sent (False:
            nothing is sent, ``NotConfirmed``).

    Raises:
        RequestError: A step did not happen within ``wait_timeout``.
        IChainError: A pre-check refused an action (one line).
    """
    market = session.market
    echo("providers (count-aware score, then price):")
    for w in session.rank_providers():
        echo(f"  {w.address}  {rating_text(w)}  price {eth(w.price)}")
    if provider not in (None, "", "none", "best", "auto") and (why := session.why_not(provider)) is not None:
        # The user's own choice stands: that provider's daemon hands the task back and the deposit returns.
        echo(f"warning: {why}; it will decline the task and refund the deposit")
    task_id = session.post(provider=provider, validator=validator, price=price, validator_fee=validator_fee,
                           timeout=timeout, confirm=confirm)
    val = session.data["validator"]
    echo(f"posted task {task_id}: provider {session.data['provider']}, validator {val} "
         f"({validator_text(market.worker(val))}), deposit "
         f"{eth(session.data['price'] + session.data['validator_fee'])}")
    if session.host is not None:
        echo(f"task hosted (encrypted, for the provider only) at {session.host.address}")

    def show(snap: dict) -> None:
        echo(f"  task {task_id}: {snap.get('chain_status')}")

    end = time.time() + wait_timeout
    while True:
        try:
            status = Status[session.wait_for(*SETTLED, timeout=10, on_update=show)]
            break
        except RequestError:
            if time.time() > end:
                raise
        try:
            advice = recover(session)
        except IChainError as err:  # e.g. refused in the deadline's very second: try again next tick
            echo(f"  not yet: {err}")
            continue
        if advice.action is Recovery.REFUND:
            echo(f"task {task_id}: {advice.reason}; deposit taken back")
            status = session.refresh().status
            break
    settled = session.data.get("settled", {})
    if status in (Status.Cancelled, Status.Expired):
        echo(f"task {task_id} ended {status.name}: refund {eth(settled.get('refund', 0))} credited "
             f"(ape ichain withdraw pays it out)")
        return RoundResult(task_id, status, refund=int(settled.get("refund", 0)))
    if status == Status.Declined:
        refund = int(settled.get("refund", 0))
        echo(f"the provider declined: {session.data.get('declined') or 'no reason given'}; your deposit of "
             f"{refund} wei is refunded (ape ichain withdraw pays it out)")
        return RoundResult(task_id, status, refund=refund)
    if status == Status.Rejected:
        echo(f"verdict: rejected by validator {val}: no result; price and fee refunded "
             f"({eth(settled.get('refund', 0))} credited, ape ichain withdraw pays it out)")
        return RoundResult(task_id, status, refund=int(settled.get("refund", 0)))
    failure = None
    dest = None
    metrics: dict[str, Any] = {}
    if status == Status.Failed:
        failure = session.failure() or {}
        echo(f"task {task_id} FAILED at the provider: {eth(settled.get('refund', 0))} refunded, failure fee "
             f"{eth(settled.get('payout', 0))} kept by the provider")
        for line in failure_lines(failure):
            echo(line)
    else:
        with progress("result (encrypted, in chunks)") as on_progress:
            dest = session.fetch_result(out or Path(f"result-{task_id}"), on_progress=on_progress)
        metrics = session.data.get("metrics", {})
        echo(f"verdict: accepted by validator {val}")
        echo(f"result in {dest} (from the {session.data.get('result_from')}, checked against resultOf): "
             f"{json.dumps(metrics)}")
    paid = int(settled.get("payout", 0))
    given = _rate(session, status, rating, validator_rating, ask_rating, echo)
    if given is None and session.refresh().status in RATEABLE:
        echo(f"not rated: rate it with `ape ichain rate {task_id} --provider N [--validator M]`")
    if status == Status.Completed:
        echo(f"provider paid {eth(paid)}; validator paid {eth(settled.get('validator_paid', 0))}")
    echo(f"provider {session.data['provider']} now {rating_text(market.worker(session.data['provider']))}")
    return RoundResult(task_id, session.refresh().status, dest, metrics, given, paid,
                       int(settled.get("refund", 0)), failure)


def _rate(session: RequesterSession, status: Status, rating: int | None, validator_rating: int,
          ask_rating: AskRating | None, echo: Callable[[str], None]) -> int | None:
    """Rate with the user's own rating (given, or asked for); None when the user gave none."""
    if status not in RATEABLE:
        return None
    if rating is None:
        if ask_rating is None:
            return None
        answer = ask_rating(status, session.data["provider"], session.data["validator"])
        if answer is None:
            return None
        rating, validator_rating = answer
    if status == Status.Failed:
        validator_rating = 0  # no verdict was given: the validator is not rated on a failed task
    session.rate(rating, validator_rating)
    echo(f"rated provider {rating}" + (f", validator {validator_rating}" if validator_rating else ""))
    return rating


__all__ = ["AskRating", "RoundResult", "failure_lines", "run_round"]
