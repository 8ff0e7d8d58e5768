"""`ape run deploy --network <choice> --account <alias>`: the same as `ape ichain deploy` (ichain/_cli/deploy.py).

Deploys TaskMarket (+ Ratings) from the packaged manifest, checks the runtime bytecode, records the addresses per
chain id (see ichain.deployments: the user registry for public chains, .ichain/deployments.json for local ones;
ICHAIN_DEPLOYMENTS or --registry override the file) and writes the explorer verification inputs.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context, network_option

from ichain._cli.deploy import DEFAULT_VERIFY_DIR, print_result, run_deploy, window_options
from ichain._cli.options import yes_option
from ichain.errors import IChainError


@click.command(cls=ConnectedProviderCommand, short_help="Deploy TaskMarket and Ratings, record the addresses")
@ape_cli_context()
@network_option()
@account_option()
@window_options
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Registry file to record into (default: by chain id, see ichain.deployments).")
@click.option("--verify-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_VERIFY_DIR,
              show_default=True, help="Where the block-explorer verification inputs go (a folder per chain id).")
@yes_option()
def cli(cli_ctx, network, account, validation_window, min_timeout, max_timeout, registry, verify_dir,
        skip_confirmation):
    """Deploy TaskMarket (which deploys Ratings) and record both addresses for this network."""
    try:
        result = run_deploy(account, validation_window=validation_window, min_timeout=min_timeout,
                            max_timeout=max_timeout, registry=registry, verify_dir=verify_dir,
                            confirm=not skip_confirmation)
    except IChainError as err:
        cli_ctx.abort(str(err))
    print_result(result)
