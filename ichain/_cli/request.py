"""``ape ichain submit``, ``status``, ``finalize``, ``refund``: the requester's commands."""

from __future__ import annotations

import json
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
              help="Provider address, or 'best' (ranked).")
@click.option("--validator", default="auto", show_default=True,
              help="Validator address, 'auto' (best other worker, named at post) or 'later' (after the result).")
@click.option("--price", default=None, help="Price for the provider (default: its asking price).")
@click.option("--validator-fee", default=None, help="Fee for the validator (default: its asking price).")
@click.option("--timeout", type=int, default=None, help="Seconds the provider has once named.")
# Checked here as well as by the SDK's finalize: a bad rating must stop the command before the deposit is sent.
@click.option("--rating", type=click.IntRange(1, 5), default=None, help="Rating 1..5 (default 5 if accepted, 1 if rejected).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the result (default ./result-<task id>).")
@click.option("--wait-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for each step.")
@click.option("--no-finalize", is_flag=True, help="Stop after downloading the result (finalize later).")
def submit(task_dir, account, transport, state_dir, host, port, market_address, provider_choice, validator, price,
           validator_fee, timeout, rating, out, wait_timeout, no_finalize):
    """Package, encrypt, post and follow TASK_DIR; download the result; finalize with a rating."""
    from ichain.requester import RequesterSession, run_round

    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port)
    market = get_market(market_address)
    session = RequesterSession.prepare(task_dir, market=market, account=account, config=config)
    click.echo(f"task {session.data['task_name']}: {session.data['task_size']} bytes, "
               f"sha256 {session.data['task_hash'][:16]}... (session {session.data['id']})")
    try:
        # (not `provider`: Ape's connected command passes its ProviderAPI under that name)
        run_round(session, provider=provider_choice, validator=validator, price=ether_amount(price),
                  validator_fee=ether_amount(validator_fee), timeout=timeout, rating=rating, out=out,
                  wait_timeout=wait_timeout, finalize=not no_finalize, echo=click.echo, progress=progress_bar)
    finally:
        session.close()


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
        t = get_market(market_address).task(int(task.lstrip("#")))
        data = {"task_id": t.task_id, "status": t.status.name, "requester": t.requester, "provider": t.provider,
                "validator": t.validator, "price": t.price, "validator_fee": t.validator_fee, "deadline": t.deadline}
        click.echo(json.dumps(data) if as_json else "\n".join(f"{k}: {'-' if v is None else v}" for k, v in data.items()))
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
@click.option("--rating", type=int, required=True, help="Rating of the provider, 1..5.")
def finalize(task_id, account, transport, state_dir, market_address, rating):
    """Finalize TASK_ID with a rating (pays the provider after an accept).

    A task submitted from this machine is finalized through its request session, which records the rating.
    """
    from ichain.requester import RequesterSession

    market = get_market(market_address)
    session = RequesterSession.for_task(task_id, market=market, account=account,
                                        config=get_config(transport=transport, state_dir=state_dir))
    if session is None:
        market.finalize(task_id, rating, sender=account)
    else:
        session.finalize(rating)
    click.echo(f"task {task_id} finalized with rating {rating}: now {market.task(task_id).status.name}")


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
