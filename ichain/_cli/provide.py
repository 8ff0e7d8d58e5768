"""``ape ichain provide``: run the provider daemon for one worker account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ichain._cli._common import get_config, get_market, market_option
from ichain._cli.options import (IChainCommand, ether_amount, host_options, ichain_options, serve_until_signal,
                                 yes_option)
from ichain._cli.signing import unlock_for_unattended_signing
from ichain.config import IChainConfig


@click.command(cls=IChainCommand)
@ichain_options
@host_options
@market_option()
@click.option("--price", default=None, help="Asking price (e.g. '0.01 ether'; default: keep the registered one, else 0).")
@click.option("--concurrency", type=int, default=None, help="Tasks worked on at once (default 2).")
@click.option("--unavailable", is_flag=True, help="Register but take no new work.")
@click.option("--poll-interval", type=float, default=None, help="Seconds between head checks when polling.")
@click.option("--trust", "trust", multiple=True, metavar="ADDRESS",
              help="Trust this validator (repeatable; added to ape-config.yaml ichain: trusted_validators). "
                   "Requesters can only pair this provider with a validator it trusts.")
@click.option("--min-fee", default=None, help="Least validator fee to judge a task for (default: the asking price).")
@click.option("--autosign", is_flag=True, default=None,
              help="Sign every transaction without asking (keystore accounts; also ichain: autosign). "
                   "Needed to run without a terminal.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File whose first line is the keystore passphrase (not readable by other users; "
                   "default: APE_ACCOUNTS_<alias>_PASSPHRASE).")
@yes_option()
def provide(account, transport, state_dir, host, port, market_address, price, concurrency, unavailable,
            poll_interval, trust, min_fee, autosign, passphrase_file, skip_confirmation):
    """Register (or update) this worker and serve tasks until SIGTERM/Ctrl-C.

    The daemon puts its trusted validators in its on-chain trusted set, runs tasks it is named
    provider for (after checking the validator, the price and that the task's time limits fit
    before its deadline), reports a failing run at once, validates those it is named validator
    for (after checking the fee) and withdraws. Killed at any point, it resumes where it was from
    its SQLite state (the chain is the truth).

    A keystore account signs from the daemon's worker threads, where nobody can answer a prompt: it is
    unlocked once at start. With --autosign the passphrase comes from --passphrase-file, else from
    APE_ACCOUNTS_<alias>_PASSPHRASE; without it one question is asked at a terminal (-y answers yes), and
    without a terminal the command stops at once, before any transaction.

    A server, not a result: no --json (`ape ichain provider status --account A --json` reads its state). Its log
    lines go to stderr at --verbosity (default INFO; DEBUG: every step). SIGTERM stops it (exit 0), Ctrl-C too
    (exit 130).
    """
    from ichain.daemon.provider import ProviderDaemon

    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port,
                        concurrency=concurrency, poll_interval=poll_interval, min_validator_fee=ether_amount(min_fee),
                        autosign=autosign or None, passphrase_file=passphrase_file)
    # Before the market, the state or any transaction: a daemon that could not sign stops here, having sent nothing.
    if unlock_for_unattended_signing(account, autosign=config.autosign, passphrase_file=config.passphrase_file,
                                     assume_yes=skip_confirmation):
        click.echo(f"{account.alias} unlocked: this daemon signs its transactions without asking", err=True)
    if trust:
        for address in trust:
            if not isinstance(address, str) or len(address) != 42 or not address.startswith("0x"):
                raise click.BadParameter(f"not an address: {address!r}", param_hint="--trust")
        config = config.replace(trusted_validators=(*config.trusted_validators, *trust))
    market = get_market(market_address)
    daemon = ProviderDaemon(market, account, config, price=ether_amount(price), available=not unavailable)
    daemon.start()
    click.echo(f"provider {account.address} ready (state {daemon.state.path}); Ctrl-C to stop", err=True)
    serve_until_signal(lambda: daemon.run(install_signals=False), daemon.stop)


def daemon_state_file(config: IChainConfig, address: str, chain_id: int) -> Path | None:
    """Where the daemon of ``address`` keeps its state for ``chain_id`` under the state folder, if it ran here."""
    from ichain.daemon.state import state_file

    path = state_file(config.state_dir / address.lower(), chain_id)
    return path if path.is_file() else None


def daemon_report(path: Path) -> dict[str, Any]:
    """A daemon's state file as a JSON-able report: :meth:`DaemonState.summary` plus ``file``, ``last_seen``
    (when the daemon last wrote it, by the file's and its write-ahead log's times), ``running`` (a daemon runs
    now, by its pid file) and ``pid`` (its process id, or None).

    Raises:
        StateError: The file can't be read.
    """
    from ichain.daemon.pidfile import running_daemon
    from ichain.daemon.state import DaemonState

    state = DaemonState(path)
    try:
        report = state.summary()
    finally:
        state.close()
    wal = path.with_name(path.name + "-wal")
    report["file"] = str(path)
    report["last_seen"] = max(p.stat().st_mtime for p in (path, wal) if p.exists())
    running = running_daemon(path.with_suffix(".pid"))  # daemon-<chain>.sqlite -> daemon-<chain>.pid (pid_file)
    report["running"] = running is not None
    report["pid"] = running["pid"] if running else None
    return report


def daemon_summary(config: IChainConfig, address: str) -> dict[str, Any] | None:
    """The state of this account's daemon on the connected chain (``ape ichain status``), or None."""
    from ape import chain

    path = daemon_state_file(config, address, int(chain.chain_id))
    return daemon_report(path) if path is not None else None
