"""``ape ichain pools``, ``providers``, ``withdraw``: the market at a glance, and getting paid."""

from __future__ import annotations

import json

import click

from ichain._cli._common import echo_table, eth, get_market, market_option
from ichain._cli.options import IChainCommand, ichain_options, read_only_options
from ichain.daemon.provider import field_of


def _worker_row(w) -> list[str]:
    avg = field_of(w, "average_rating", "rating", "average", default=None)
    count = field_of(w, "rating_count", "ratings", "count", default=0)
    return [str(field_of(w, "address")), f"{float(avg):.2f}" if avg is not None else "-", str(count),
            eth(field_of(w, "price", default=0))]


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def providers(account, state_dir, market_address, as_json):
    """Available workers ranked by average rating, then price."""
    ranked = get_market(market_address).providers()
    if as_json:
        click.echo(json.dumps([dict(zip(("address", "rating", "ratings", "price"), _worker_row(w))) for w in ranked]))
        return
    echo_table([_worker_row(w) for w in ranked], ["provider", "rating", "ratings", "price"])


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pools(account, state_dir, market_address, as_json):
    """Pending tasks, available workers, executing and validating tasks."""
    p = get_market(market_address).pools()
    names = ("pending", "available", "executing", "awaiting_validator", "validating", "accepted")
    data = {n: [str(x) if not isinstance(x, int) else x for x in (field_of(p, n, default=None) or [])] for n in names
            if field_of(p, n, default=None) is not None}
    if as_json:
        click.echo(json.dumps(data))
        return
    for name, items in data.items():
        click.echo(f"{name} ({len(items)}): " + (", ".join(str(getattr(i, 'address', i)) for i in items) or "-"))


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
    click.echo(f"withdrew {eth(amount if isinstance(amount, int) else credit)} to {account.address}")
