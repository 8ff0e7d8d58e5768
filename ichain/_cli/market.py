"""``ape ichain pools``, ``providers``, ``validators``, ``withdraw``: the market at a glance, and getting paid."""

from __future__ import annotations

import json
from typing import Any

import click

from ichain._cli._common import echo_table, get_market, market_option
from ichain._cli.options import IChainCommand, ichain_options, read_only_options
from ichain.market import Worker
from ichain.requester.format import eth


def _record_json(record: Any) -> dict:
    """A role's record for ``--json``: the ranking score in stars, the count, the plain mean (null unrated)."""
    count = int(record.count)
    return {"score": round(float(record.score), 3), "ratings": count,
            "mean": (record.sum / count) if count else None}


def _worker_json(w: Worker) -> dict:
    """A worker for ``--json``: provider and validator records, missed verdicts; the price is in wei."""
    return {"address": w.address, "price": w.price, "provider": _record_json(w.provider_record),
            "validator": _record_json(w.validator_record), "missed": w.missed}


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def providers(account, state_dir, market_address, as_json):
    """Available workers ranked by provider score (count-aware, value-weighted), then price."""
    ranked = get_market(market_address).providers()
    if as_json:
        click.echo(json.dumps([_worker_json(w) for w in ranked]))
        return
    echo_table([[w.address, f"{w.provider_record.score:.2f}", str(w.provider_record.count), eth(w.price)]
                for w in ranked], ["provider", "score", "ratings", "price"])


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--provider", "of_provider", default=None, help="Only the validators this provider trusts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validators(account, state_dir, market_address, of_provider, as_json):
    """Available workers ranked by their own validator record (score, then fewer missed verdicts, then price)."""
    from ichain.requester import validator_rank_key

    market = get_market(market_address)
    if of_provider:
        pool = [w for w in market.workers(market.trusted_validators(of_provider)) if w.available]
    else:
        pool = market.providers()
    ranked = sorted((w for w in pool if w.address.lower() != str(of_provider or "").lower()), key=validator_rank_key)
    if as_json:
        click.echo(json.dumps([_worker_json(w) for w in ranked]))
        return
    echo_table([[w.address, f"{w.validator_record.score:.2f}", str(w.validator_record.count), str(w.missed),
                 eth(w.price)] for w in ranked], ["validator", "score", "ratings", "missed", "fee asked"])


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pools(account, state_dir, market_address, as_json):
    """Pending tasks, available workers, executing and validating tasks."""
    p = get_market(market_address).pools()
    data: dict[str, list] = {"pending": p.pending, "available": p.available, "executing": p.executing,
                             "validating": p.validating}
    if as_json:
        click.echo(json.dumps(data))
        return
    for name, items in data.items():
        click.echo(f"{name} ({len(items)}): " + (", ".join(str(i) for i in items) or "-"))


@click.command(cls=IChainCommand)
@ichain_options
@market_option()
def withdraw(account, transport, state_dir, market_address):
    """Pay out this account's credits (earnings, fees, refunds)."""
    market = get_market(market_address)
    credit = int(market.credit(account.address))
    if credit == 0:
        click.echo(f"{account.address} has nothing to withdraw")
        return
    amount = market.withdraw(sender=account)
    click.echo(f"withdrew {eth(amount)} to {account.address}")
