"""``ape ichain submit``, ``status``, ``rate``, ``refund``: the requester's commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from ichain._cli._common import echo_table, get_config, get_market, market_option, stdin_is_terminal
from ichain._cli.options import (
    IChainCommand,
    ether_amount,
    host_options,
    ichain_options,
    json_option,
    read_only_options,
    yes_option,
)
from ichain._cli.output import emit, step_echo
from ichain.market import Status
from ichain.requester.format import eth
from ichain.transfer import progress_bar

if TYPE_CHECKING:
    from ichain.market import Market
    from ichain.requester import RequesterSession, RoundResult

#: Exit status of ``submit`` when the provider declined the task (its one line says why; the deposit is refunded).
DECLINED_EXIT = 1


@click.command(cls=IChainCommand)
@click.argument("task_dir", type=click.Path(file_okay=False, path_type=Path))
@ichain_options
@host_options
@market_option()
@click.option("--provider", "provider_choice", default="best", show_default=True,
              help="Provider address, or 'best' (top count-aware score with a trusted validator available).")
@click.option("--validator", default="auto", show_default=True,
              help="Validator address, or 'auto' (the best validator the provider trusts, fee >= its price).")
@click.option("--price", default=None, help="Price for the provider (default: its asking price).")
@click.option("--validator-fee", default=None, help="Fee for the validator (default: its asking price).")
@click.option("--timeout", type=int, default=None, help="Seconds the provider has once named.")
# Checked here as well as by the SDK's rate: a bad rating must stop the command before the deposit is sent.
@click.option("--rating", type=click.IntRange(1, 5), default=None,
              help="Provider rating 1..5 once Completed or Failed (none given: asked at a terminal, else rate later).")
@click.option("--validator-rating", type=click.IntRange(0, 5), default=0, show_default=True,
              help="Validator rating 1..5 given with --rating (0: not rated; never on a failed task).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the result (default ./result-<task id>).")
@click.option("--wait-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for each step.")
@yes_option()
@json_option()
def submit(task_dir, account, transport, state_dir, host, port, market_address, provider_choice, validator, price,
           validator_fee, timeout, rating, validator_rating, out, wait_timeout, skip_confirmation, as_json):
    """Package, encrypt, post and follow TASK_DIR; download the verified result (or show why it failed); rate.

    At a terminal it asks before sending the deposit (-y: do not ask); without one it posts what the options say.
    The rating is yours only: give --rating, answer the prompt, or rate later with `ape ichain rate`.

    JSON: ``task_id``, ``session``, ``status``, ``provider``, ``validator``, ``price``, ``validator_fee``, ``paid``,
    ``validator_paid``, ``refund`` (wei), ``result_dir``, ``metrics``, ``rating``, ``failure``, ``gas_used``,
    ``transactions``; progress goes to stderr.
    """
    from ichain.requester import RequesterSession, run_round

    echo = step_echo(as_json)
    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port)
    market = get_market(market_address)
    session = RequesterSession.prepare(task_dir, market=market, account=account, config=config)
    echo(f"task {session.data['task_name']}: {session.data['task_size']} bytes, "
         f"sha256 {session.data['task_hash'][:16]}... (session {session.data['id']})")
    ask = _interactive(as_json)
    try:
        # (not `provider`: Ape's connected command passes its ProviderAPI under that name)
        outcome = run_round(session, provider=provider_choice, validator=validator, price=ether_amount(price),
                            validator_fee=ether_amount(validator_fee), timeout=timeout, rating=rating,
                            validator_rating=validator_rating,
                            ask_rating=functools.partial(_prompt_rating, err=as_json) if ask else None,
                            out=out, wait_timeout=wait_timeout, echo=echo,
                            progress=functools.partial(progress_bar, file=sys.stderr) if as_json else progress_bar,
                            confirm=_confirm_post(session.data["task_name"], err=as_json)
                            if ask and not skip_confirmation else None)
        emit(round_json(session, outcome, market), as_json=as_json)
    finally:
        session.close()
    if outcome.status == Status.Declined:
        # the round did not run: a script must not take the refund line for a result
        raise click.exceptions.Exit(DECLINED_EXIT)


def round_json(session: RequesterSession, outcome: RoundResult, market: Market) -> dict[str, Any]:
    """The JSON result of a round (``submit --json``, and the base of ``demo --json``): amounts in wei."""
    settled = session.data.get("settled", {})
    txs = market.task_transactions(outcome.task_id)
    return {"task_id": outcome.task_id, "session": session.data["id"], "status": outcome.status.name,
            "provider": session.data.get("provider"), "validator": session.data.get("validator"),
            "price": int(session.data.get("price", 0)), "validator_fee": int(session.data.get("validator_fee", 0)),
            "paid": outcome.paid, "validator_paid": int(settled.get("validator_paid", 0)), "refund": outcome.refund,
            "result_dir": str(outcome.result_dir) if outcome.result_dir is not None else None,
            "metrics": outcome.metrics, "rating": outcome.rating, "failure": outcome.failure,
            "gas_used": sum(tx.gas_used for tx in txs), "transactions": len(txs)}


def _confirm_post(task_name: str, *, err: bool = False) -> Callable[[dict[str, Any]], bool]:
    """The question ``submit`` asks at a terminal before it sends the deposit (after every pre-check)."""

    def confirm(terms: dict[str, Any]) -> bool:
        who = terms["provider"] or "none yet (pending)"
        return click.confirm(f"post task {task_name} paying {eth(terms['price'])} to provider {who} (validator "
                             f"{terms['validator']}, fee {eth(terms['validator_fee'])}; deposit "
                             f"{eth(terms['deposit'])})?", default=False, err=err)

    return confirm


def _interactive(as_json: bool = False) -> bool:
    """Whether a person is at the terminal to answer a question (never a default answer otherwise).

    With ``--json`` stdout is the result (often piped), so the questions go to stderr and that must be a terminal.
    """
    return stdin_is_terminal() and (sys.stderr if as_json else sys.stdout).isatty()


def _ask_stars(question: str, *, err: bool = False) -> int:
    """Ask for 1..5 stars until the answer is one (an empty answer is 0: no rating)."""
    while True:
        answer = str(click.prompt(question, default="", show_default=False, err=err)).strip()
        if not answer:
            return 0
        if answer.isdigit() and 1 <= int(answer) <= 5:
            return int(answer)
        click.echo("  a rating is 1, 2, 3, 4 or 5 (or empty)", err=err)


def _prompt_rating(status: Status, provider: str, validator: str, *, err: bool = False) -> tuple[int, int] | None:
    """Ask for the provider's rating (and the validator's after an accept); an empty answer rates later."""
    rating = _ask_stars(f"rate provider {provider} (1..5, empty: rate later)", err=err)
    if not rating:
        return None
    vrating = (_ask_stars(f"rate validator {validator} (1..5, empty: not rated)", err=err)
               if status == Status.Completed else 0)
    return rating, vrating


@click.command(cls=IChainCommand)
@click.argument("task", required=False)
@read_only_options
@market_option()
@json_option()
def status(task, account, state_dir, market_address, as_json):
    """Show a task (by on-chain id) or, without TASK, this account's requests and daemon state.

    JSON with TASK: ``task_id``, ``status``, ``requester``, ``provider``, ``validator``, ``price``,
    ``validator_fee`` (wei), ``deadline``, ``failure``; without: ``requests``, ``daemon``.
    """
    from ichain._cli.provide import daemon_summary
    from ichain.requester import RequesterSession

    if task:
        market = get_market(market_address)
        t = market.task(int(task.lstrip("#")))
        data: dict = {"task_id": t.task_id, "status": t.status.name, "requester": t.requester, "provider": t.provider,
                      "validator": t.validator, "price": t.price, "validator_fee": t.validator_fee,
                      "deadline": t.deadline}
        session = (RequesterSession.for_task(t.task_id, market=market, account=account,
                                             config=get_config(state_dir=state_dir)) if account is not None else None)
        failure = session.failure() if session is not None and t.status in (Status.Failed, Status.Rated) else None

        def task_text() -> None:
            click.echo("\n".join(f"{k}: {'-' if v is None else v}" for k, v in data.items()))
            if failure:
                from ichain.requester import failure_lines

                click.echo("failure report:")
                for line in failure_lines(failure):
                    click.echo(line)

        emit({**data, "failure": failure}, as_json=as_json, text=task_text)
        return
    if account is None:
        raise click.UsageError("give a TASK id or --account to list its requests")
    config = get_config(state_dir=state_dir)
    sessions = RequesterSession.list(config=config, address=account.address)
    daemon = daemon_summary(config, account.address)

    def text() -> None:
        echo_table([[s["id"], s.get("task_id", "-"), s["task_name"], s["stage"], s.get("chain_status", "-")]
                    for s in sessions], ["session", "task", "name", "stage", "on chain"])
        if daemon:
            click.echo(f"daemon: checkpoint block {daemon['checkpoint']}, {len(daemon['tasks'])} task(s)")
            for t in daemon["tasks"]:
                click.echo(f"  task {t['task_id']} as {t['role']}: {t['stage']}")

    emit({"requests": sessions, "daemon": daemon}, as_json=as_json, text=text)


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
@click.option("--provider", "provider_rating", type=int, required=True, help="Rating of the provider, 1..5.")
@click.option("--validator", "validator_rating", type=int, default=0, show_default=True,
              help="Rating of the validator, 1..5 (0: not rated; must be 0 for a failed task).")
@yes_option()
@json_option()
def rate(task_id, account, transport, state_dir, market_address, provider_rating, validator_rating,
         skip_confirmation, as_json):
    """Rate a Completed or Failed TASK_ID, once (a rating weighs as much as the wei the task paid).

    A rating is final: at a terminal it asks first (-y: do not ask). A task submitted from this machine is
    rated through its request session, which records the rating.

    JSON: ``task_id``, ``provider_rating``, ``validator_rating`` (0: not rated), ``status``.
    """
    from ichain.requester import RequesterSession

    market = get_market(market_address)
    session = RequesterSession.for_task(task_id, market=market, account=account,
                                        config=get_config(transport=transport, state_dir=state_dir))
    what = f"provider {provider_rating}" + (f", validator {validator_rating}" if validator_rating else "")
    confirm: Callable[[], bool] | None = None
    if _interactive(as_json) and not skip_confirmation:
        # Asked by the SDK once its checks passed, so a doomed rating never asks.
        confirm = functools.partial(click.confirm, f"rate task {task_id}: {what} (a rating is final)?",
                                    default=False, err=as_json)

    if session is None:
        market.rate(task_id, provider_rating, validator_rating, sender=account, confirm=confirm)
    else:
        session.rate(provider_rating, validator_rating, confirm=confirm)
    now = market.task(task_id).status.name
    emit({"task_id": task_id, "provider_rating": provider_rating, "validator_rating": validator_rating,
          "status": now}, as_json=as_json, text=f"task {task_id} rated: {what}; now {now}")


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
@json_option()
def refund(task_id, account, transport, state_dir, market_address, as_json):
    """Get the deposit of TASK_ID back: cancel while pending, or expire it after its deadline.

    JSON: ``task_id``, ``status`` (Cancelled or Expired), ``credit`` (wei this account can withdraw now).
    """
    from ichain.requester import RequesterSession

    market = get_market(market_address)
    session = RequesterSession.for_task(task_id, market=market, account=account,
                                        config=get_config(transport=transport, state_dir=state_dir))
    if session is not None:
        session.refund()
    elif market.task(task_id).status == Status.Pending:
        market.cancel(task_id, sender=account)
    else:
        market.expire(task_id, sender=account)
    credit = int(market.credit(account.address))
    now = market.task(task_id).status.name
    emit({"task_id": task_id, "status": now, "credit": credit}, as_json=as_json,
         text=f"task {task_id} is now {now}; your credit: {eth(credit)} (ape ichain withdraw pays it out)")
