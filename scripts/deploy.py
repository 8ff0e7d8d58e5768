"""`ape run deploy --network <choice> --account <alias>`: deploy TaskMarket (+ Ratings) and record it.

The addresses are recorded per chain id (see ichain.deployments): public networks in the committed
deployments.json, local chains in .ichain/deployments.json; ICHAIN_DEPLOYMENTS or --registry override the file.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context, network_option

from ichain.errors import IChainError


@click.command(cls=ConnectedProviderCommand, short_help="Deploy TaskMarket and Ratings, record the addresses")
@ape_cli_context()
@network_option()
@account_option()
@click.option("--validation-window", type=int, default=3600, show_default=True,
              help="Seconds a validator has for its verdict once the result is committed.")
@click.option("--min-timeout", type=int, default=60, show_default=True, help="Smallest per-task timeout (s).")
@click.option("--max-timeout", type=int, default=7 * 24 * 3600, show_default=True,
              help="Largest per-task timeout (s, < 2**24).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Registry file to record into (default: by chain id, see ichain.deployments).")
def cli(cli_ctx, network, account, validation_window, min_timeout, max_timeout, registry):
    """Deploy TaskMarket (which deploys Ratings) and record both addresses for this network."""
    from ichain import deployments

    try:
        found = deployments.deploy(
            account,
            validation_window=validation_window,
            min_timeout=min_timeout,
            max_timeout=max_timeout,
            network=cli_ctx.provider.network_choice,
            path=registry,
        )
    except IChainError as err:
        cli_ctx.abort(str(err))
    path = registry or deployments.registry_path(found.chain_id)
    click.echo(f"TaskMarket {found.market}")
    click.echo(f"Ratings {found.ratings}")
    click.echo(f"chain id {found.chain_id}, block {found.block}, recorded in {path}")
