"""``ape ichain pools``, ``providers``, ``withdraw``: the market at a glance, and getting paid."""

from __future__ import annotations

import json

import click

from ichain._cli._common import echo_table, get_market, market_option
from ichain._cli.options import IChainCommand, ichain_options, read_only_options
from ichain.market import Worker
from ichain.requester.format import eth


def _worker_row(w: Worker) -> list[str]:
    avg = w.average_rating
    return [w.address, "-" if avg is None else f"{avg:.2f}", str(w.rating_count), eth(w.price)]


def _worker_json(w: Worker) -> dict:
    """A worker for ``--json``: its average rating is null until it is rated, the price is in wei."""
    return {"address": w.address, "rating": w.average_rating, "ratings": w.rating_count, "price": w.price}


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def providers(account, state_dir, market_address, as_json):
    """Available workers ranked by average rating, then price."""
    ranked = get_market(market_address).providers()
    if as_json:
        click.echo(json.dumps([_worker_json(w) for w in ranked]))
        return
    echo_table([_worker_row(w) for w in ranked], ["provider", "rating", "ratings", "price"])


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pools(account, state_dir, market_address, as_json):
    """Pending tasks, available workers, executing and validating tasks."""
    p = get_market(market_address).pools()
    data: dict[str, list] = {"pending": p.pending, "available": p.available, "executing": p.executing,
            "awaiting_validator": p.awaiting_validator, "validating": p.validating, "accepted": p.accepted}
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
