"""``ape ichain submit``, ``status``, ``finalize``, ``refund``: the requester's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ichain._cli._common import echo_table, eth, get_config, get_market, market_option
from ichain._cli.options import IChainCommand, ether_amount, host_options, ichain_options, read_only_options
from ichain.daemon.provider import field_of, status_name
from ichain.errors import IChainError
from ichain.requester import TERMINAL, RequestError
from ichain.transfer import progress_bar


def _rating_line(market, address: str) -> str:
    w = market.worker(address)
    avg = field_of(w, "average_rating", "rating", "average", default=None)
    count = field_of(w, "rating_count", "ratings", "count", default=None)
    return f"{avg if avg is not None else '-'} ({count if count is not None else '?'} ratings)"


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
@click.option("--rating", type=click.IntRange(1, 5), default=None, help="Rating 1..5 (default 5 if accepted, 1 if rejected).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the result (default ./result-<task id>).")
@click.option("--wait-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for each step.")
@click.option("--no-finalize", is_flag=True, help="Stop after downloading the result (finalize later).")
def submit(task_dir, account, transport, state_dir, host, port, market_address, provider_choice, validator, price,
           validator_fee, timeout, rating, out, wait_timeout, no_finalize):
    """Package, encrypt, post and follow TASK_DIR; download the result; finalize with a rating."""
    from ichain.requester import RequesterSession

    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port)
    market = get_market(market_address)
    session = RequesterSession.prepare(task_dir, market=market, account=account, config=config)
    click.echo(f"task {session.data['task_name']}: {session.data['task_size']} bytes, "
               f"sha256 {session.data['task_hash'][:16]}... (session {session.data['id']})")
    try:
        # (not `provider`: Ape's connected command passes its ProviderAPI under that name)
        run_submission(session, market, provider=provider_choice, validator=validator, price=ether_amount(price),
                       validator_fee=ether_amount(validator_fee), timeout=timeout, rating=rating, out=out,
                       wait_timeout=wait_timeout, finalize=not no_finalize)
    finally:
        session.close()


def run_submission(session, market, *, provider="best", validator="auto", price=None, validator_fee=None,
                   timeout=None, rating=None, out=None, wait_timeout=900.0, finalize=True, echo=click.echo) -> dict:
    """The whole requester round on a prepared session (shared by ``submit`` and ``demo``)."""
    ranked = session.rank_providers()
    echo("providers (rating, then price):")
    for w in ranked:
        echo(f"  {field_of(w, 'address')}  rating {_rating_line(market, field_of(w, 'address'))}  "
             f"price {eth(field_of(w, 'price', default=0))}")
    named_validator = None if validator == "later" else validator
    fee = validator_fee
    if fee is None:
        val_addr = session._pick(named_validator or "auto", (session._pick(provider, (), "provider"),), "validator")
        fee = int(field_of(market.worker(val_addr), "price", default=0)) if val_addr else 0
    task_id = session.post(provider=provider, validator=named_validator, price=price, validator_fee=fee,
                           timeout=timeout)
    echo(f"posted task {task_id}: provider {session.data['provider']}, "
         f"validator {session.data.get('validator') or 'after the result'}, "
         f"deposit {eth(session.data['price'] + session.data['validator_fee'])}")
    if session.host is not None:
        echo(f"task hosted (encrypted) at {session.host.address}")

    def show(snap: dict) -> None:
        echo(f"  task {task_id}: {snap.get('chain_status')}")

    def follow(*targets: str) -> str:
        """Wait for ``targets``; a silent provider means a refund, a silent validator a new one."""
        end = time.time() + wait_timeout
        while True:
            try:
                return session.wait_for(*targets, timeout=10, on_update=show)
            except RequestError:
                if time.time() > end:
                    raise
            current = status_name(session.refresh())
            if not session.overdue():
                continue
            if current in ("Pending", "Executing"):
                echo(f"task {task_id}: the provider missed its deadline; taking the deposit back")
                try:
                    session.refund()
                except IChainError as err:  # e.g. the deadline's last second: try again next tick
                    echo(f"  not yet: {err}")
                    continue
                return status_name(session.refresh())
            if current == "Validating":
                echo(f"task {task_id}: the validator missed its deadline; naming another")
                try:
                    echo(f"validator {session.choose_validator('auto')} named")
                except IChainError as err:
                    echo(f"no other validator ({err}); taking the deposit back")
                    session.refund()
                    return status_name(session.refresh())

    status = follow("AwaitingValidator", "Validating", "Accepted", "Rejected")
    if status == "AwaitingValidator":
        val = session.choose_validator("auto" if validator in ("later", "auto", None) else validator)
        echo(f"validator {val} named")
    if status not in TERMINAL:
        status = follow("Accepted", "Rejected")
    summary: dict = {"task_id": task_id, "verdict": status}
    if status in ("Accepted", "Rejected"):
        with progress_bar("result (encrypted, in chunks)") as on_progress:
            dest = session.fetch_result(out or Path(f"result-{task_id}"), on_progress=on_progress)
        summary["result_dir"] = str(dest)
        summary["metrics"] = session.data.get("metrics", {})
        echo(f"result in {dest}: {json.dumps(summary['metrics'])}")
        echo(f"verdict: {status.lower()}")
        if finalize:
            r = rating or (5 if status == "Accepted" else 1)
            session.finalize(r)
            settled = session.data.get("settled", {})
            echo(f"finalized with rating {r}: provider paid {eth(settled.get('payout', 0))}"
                 if status == "Accepted" else f"closed with rating {r}: deposit price refunded to you")
            summary["rating"] = r
            summary["paid"] = settled.get("payout", 0)
            summary["provider_rating"] = _rating_line(market, session.data["provider"])
            echo(f"provider {session.data['provider']} rating now {summary['provider_rating']}")
    else:
        settled = session.data.get("settled", {})
        echo(f"task {task_id} ended {status}: refund {eth(settled.get('refund', 0))} credited "
             f"(ape ichain withdraw pays it out)")
    return summary


@click.command(cls=IChainCommand)
@click.argument("task", required=False)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(task, account, state_dir, market_address, as_json):
    """Show a task (by on-chain id) or, without TASK, this account's requests and daemon state."""
    from ichain.requester import RequesterSession

    if task:
        market = get_market(market_address)
        t = market.task(int(task.lstrip("#")))
        data = {"task_id": int(task.lstrip("#")), "status": status_name(t),
                **{k: str(field_of(t, k, default="")) for k in ("requester", "provider", "validator", "price",
                                                               "validator_fee", "deadline")}}
        click.echo(json.dumps(data) if as_json else "\n".join(f"{k}: {v}" for k, v in data.items()))
        return
    if account is None:
        raise click.UsageError("give a TASK id or --account to list its requests")
    config = get_config(state_dir=state_dir)
    sessions = RequesterSession.list(config=config, address=account.address)
    daemon = _daemon_summary(config, account.address)
    if as_json:
        click.echo(json.dumps({"requests": sessions, "daemon": daemon}, default=str))
        return
    echo_table([[s.get("id"), s.get("task_id", "-"), s.get("task_name"), s.get("stage"), s.get("chain_status", "-")]
                for s in sessions], ["session", "task", "name", "stage", "on chain"])
    if daemon:
        click.echo(f"daemon: checkpoint block {daemon['checkpoint']}, {len(daemon['tasks'])} task(s)")
        for t in daemon["tasks"]:
            click.echo(f"  task {t['task_id']} as {t['role']}: {t['stage']}")


def _daemon_summary(config, address: str) -> dict | None:
    from ichain.daemon.state import DaemonState

    paths = sorted(config.account_dir(address).glob("daemon-*.sqlite"))
    if not paths:
        return None
    state = DaemonState(paths[-1])
    try:
        return state.summary()
    finally:
        state.close()


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
@click.option("--rating", type=click.IntRange(1, 5), required=True, help="Rating of the provider, 1..5.")
def finalize(task_id, account, transport, state_dir, market_address, rating):
    """Finalize TASK_ID with a rating (pays the provider after an accept)."""
    market = get_market(market_address)
    market.finalize(task_id, rating, sender=account)
    click.echo(f"task {task_id} finalized with rating {rating}: now {status_name(market.task(task_id))}")


@click.command(cls=IChainCommand)
@click.argument("task_id", type=int)
@ichain_options
@market_option()
def refund(task_id, account, transport, state_dir, market_address):
    """Get the deposit of TASK_ID back: cancel while pending, or expire it after its deadline."""
    market = get_market(market_address)
    st = status_name(market.task(task_id))
    if st == "Pending":
        market.cancel(task_id, sender=account)
    else:
        market.expire(task_id, sender=account)
    credit = int(market.credit(account.address))
    click.echo(f"task {task_id} is now {status_name(market.task(task_id))}; your credit: {eth(credit)} "
               f"(ape ichain withdraw pays it out)")
