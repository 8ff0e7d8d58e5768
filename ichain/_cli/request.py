"""``ape ichain submit``, ``status``, ``rate``, ``refund``: the requester's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ichain._cli._common import echo_table, get_config, get_market, market_option
from ichain._cli.options import IChainCommand, ether_amount, host_options, ichain_options, read_only_options
from ichain.market import Status
from ichain.requester.format import eth
from ichain.transfer import progress_bar


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
def submit(task_dir, account, transport, state_dir, host, port, market_address, provider_choice, validator, price,
           validator_fee, timeout, rating, validator_rating, out, wait_timeout):
    """Package, encrypt, post and follow TASK_DIR; download the verified result (or show why it failed); rate.

    The rating is yours only: give --rating, answer the prompt, or rate later with `ape ichain rate`.
    """
    from ichain.requester import RequesterSession, run_round

    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port)
    market = get_market(market_address)
    session = RequesterSession.prepare(task_dir, market=market, account=account, config=config)
    click.echo(f"task {session.data['task_name']}: {session.data['task_size']} bytes, "
               f"sha256 {session.data['task_hash'][:16]}... (session {session.data['id']})")
    try:
        # (not `provider`: Ape's connected command passes its ProviderAPI under that name)
        run_round(session, provider=provider_choice, validator=validator, price=ether_amount(price),
                  validator_fee=ether_amount(validator_fee), timeout=timeout, rating=rating,
                  validator_rating=validator_rating, ask_rating=_prompt_rating if _interactive() else None,
                  out=out, wait_timeout=wait_timeout, echo=click.echo, progress=progress_bar)
    finally:
        session.close()


def _interactive() -> bool:
    """Whether a person is at the terminal to answer the rating prompt (never a default rating otherwise)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _ask_stars(question: str) -> int:
    """Ask for 1..5 stars until the answer is one (an empty answer is 0: no rating)."""
    while True:
        answer = str(click.prompt(question, default="", show_default=False)).strip()
        if not answer:
            return 0
        if answer.isdigit() and 1 <= int(answer) <= 5:
            return int(answer)
        click.echo("  a rating is 1, 2, 3, 4 or 5 (or empty)")


def _prompt_rating(status: Status, provider: str, validator: str) -> tuple[int, int] | None:
    """Ask for the provider's rating (and the validator's after an accept); an empty answer rates later."""
    rating = _ask_stars(f"rate provider {provider} (1..5, empty: rate later)")
    if not rating:
        return None
    vrating = _ask_stars(f"rate validator {validator} (1..5, empty: not rated)") if status == Status.Completed else 0
    return rating, vrating


@click.command(cls=IChainCommand)
@click.argument("task", required=False)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(task, account, state_dir, market_address, as_json):
    """Show a task (by on-chain id) or, without TASK, this account's requests and daemon state."""
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
        if as_json:
            click.echo(json.dumps({**data, "failure": failure}))
            return
        click.echo("\n".join(f"{k}: {'-' if v is None else v}" for k, v in data.items()))
        if failure:
            from ichain.requester import failure_lines

            click.echo("failure report:")
            for line in failure_lines(failure):
                click.echo(line)
        return
    if account is None:
        raise click.UsageError("give a TASK id or --account to list its requests")
    config = get_config(state_dir=state_dir)
    sessions = RequesterSession.list(config=config, address=account.address)
    daemon = daemon_summary(config, account.address)
    if as_json:
        click.echo(json.dumps({"requests": sessions, "daemon": daemon}, default=str))
        return
    echo_table([[s["id"], s.get("task_id", "-"), s["task_name"], s["stage"], s.get("chain_status", "-")]
                for s in sessions], ["session", "task", "name", "stage", "on chain"])
    if daemon:
        click.echo(f"daemon: checkpoint block {daemon['checkpoint']}, {len(daemon['tasks'])} task(s)")
        for t in daemon["tasks"]:
            click.echo(f"  task {t['task_id']} as {t['role']}: {t['stage']}")


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
@click.option("--provider", "provider_rating", type=int, required=True, help="Rating of the provider, 1..5.")
@click.option("--validator", "validator_rating", type=int, default=0, show_default=True,
              help="Rating of the validator, 1..5 (0: not rated; must be 0 for a failed task).")
def rate(task_id, account, transport, state_dir, market_address, provider_rating, validator_rating):
    """Rate a Completed or Failed TASK_ID, once (a rating weighs as much as the wei the task paid).

    A task submitted from this machine is rated through its request session, which records the rating.
    """
    from ichain.requester import RequesterSession

    market = get_market(market_address)
    session = RequesterSession.for_task(task_id, market=market, account=account,
                                        config=get_config(transport=transport, state_dir=state_dir))
    if session is None:
        market.rate(task_id, provider_rating, validator_rating, sender=account)
    else:
        session.rate(provider_rating, validator_rating)
    click.echo(f"task {task_id} rated: provider {provider_rating}"
               + (f", validator {validator_rating}" if validator_rating else "")
               + f"; now {market.task(task_id).status.name}")


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
def refund(task_id, account, transport, state_dir, market_address):
    """Get the deposit of TASK_ID back: cancel while pending, or expire it after its deadline."""
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
    credit = market.credit(account.address)
    click.echo(f"task {task_id} is now {market.task(task_id).status.name}; your credit: {eth(credit)} "
               f"(ape ichain withdraw pays it out)")
