"""``ape ichain account new``: create an Ape keystore account (the paper's built-in address creation)."""

from __future__ import annotations

import click

from ichain._cli._common import stdin_is_terminal
from ichain._cli.options import IChainLocalCommand, json_option
from ichain._cli.output import emit


@click.group()
def account():
    """Accounts for iChain (Ape keystore accounts)."""


@account.command("new", cls=IChainLocalCommand)
@click.argument("alias")
@click.option("--passphrase", default=None, envvar="ICHAIN_PASSPHRASE",
              help="Passphrase encrypting the keystore file (default: asked twice at a terminal).")
@click.option("--show-mnemonic", is_flag=True, help="Print the recovery phrase (write it down!).")
@json_option()
def new(alias, passphrase, show_mnemonic, as_json):
    """Create a keystore account ALIAS usable with --account ALIAS.

    JSON: ``alias``, ``address`` (and ``mnemonic`` only with --show-mnemonic).
    """
    from ape import accounts
    from ape_accounts import generate_account

    if alias in accounts.aliases:
        raise click.ClickException(f"an account named {alias!r} already exists")
    if passphrase is None:
        if not stdin_is_terminal():  # never wait on a closed or piped stdin for a secret
            raise click.ClickException("no passphrase: give --passphrase or ICHAIN_PASSPHRASE, or run at a terminal")
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=as_json)
    try:
        acct, mnemonic = generate_account(alias, passphrase)
    except Exception as err:  # ape's alias/passphrase validation
        raise click.ClickException(" ".join(str(err).split())) from None
    data = {"alias": alias, "address": str(acct.address)}
    if show_mnemonic:  # the recovery phrase is printed only when asked for, in either form
        data["mnemonic"] = mnemonic

    def text() -> None:
        click.echo(f"created account {alias}: {acct.address}")
        if show_mnemonic:
            click.echo(f"recovery phrase: {mnemonic}")
        click.echo(f"use it with --account {alias} (set APE_ACCOUNTS_{alias}_PASSPHRASE for unattended daemons)")

    emit(data, as_json=as_json, text=text)
