"""Unlocking a keystore account once, before a long-running command signs in worker threads.

Ape's keystore accounts (:class:`ape_accounts.KeyfileAccount`) ask ``Sign:`` on the terminal for every
transaction unless autosign is on. A daemon signs from worker threads, often with no terminal at all
(systemd, nohup, a closed stdin): a prompt there aborts its first transaction, or worse, waits forever.
So the decision is taken once, at start, before anything is sent:

- ``autosign`` set (``--autosign``, ``ichain: autosign: true``, ``APE_ICHAIN_AUTOSIGN``): unlock with the
  passphrase from the passphrase file, else Ape's ``APE_ACCOUNTS_<alias>_PASSPHRASE``; with neither, ask for it
  at a terminal, or fail with one line without one.
- not set, at a terminal: one question (``-y`` answers it), then unlock the same way.
- not set, no terminal: fail at once with one line naming the fix. Nothing is signed, nothing is sent.

Accounts that are not keystore accounts (``TEST::n``, hardware wallets) are left exactly as they are.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click

from ichain._cli._common import stdin_is_terminal
from ichain.errors import IChainError

#: The one question asked at a terminal when autosign is not set.
QUESTION = "sign every transaction of this daemon without asking?"


class SigningError(IChainError):
    """The account can't be unlocked for unattended signing (no passphrase, a wrong one, no terminal)."""


def is_keystore(account: Any) -> bool:
    """Whether ``account`` is an Ape keystore account (the kind that prompts before each signature)."""
    from ape_accounts import KeyfileAccount

    return isinstance(account, KeyfileAccount)


def passphrase_variable(alias: str) -> str:
    """The environment variable Ape reads a keystore account's passphrase from."""
    return f"APE_ACCOUNTS_{alias}_PASSPHRASE"


def read_passphrase_file(path: str | Path) -> str:
    """The passphrase in the first line of ``path`` (its line ending stripped, nothing else).

    A file any other user of the machine can read or write is refused: together with the keystore file, which
    sits readable in Ape's data folder, it is the private key. Group access is allowed, so a file owned by root
    and shared with the service's group (mode 0640) works.

    Raises:
        SigningError: The file is missing, unreadable, open to other users or its first line is empty.
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise SigningError(f"passphrase file {path} is not a regular file")
        if os.name == "posix" and mode & (stat.S_IROTH | stat.S_IWOTH):
            raise SigningError(
                f"passphrase file {path} is open to other users (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
            )
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except FileNotFoundError:
        raise SigningError(f"passphrase file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SigningError(f"passphrase file {path} can't be read: {err.__class__.__name__}") from None
    passphrase = first.rstrip("\r\n")
    if not passphrase:
        raise SigningError(f"passphrase file {path}: the first line is empty")
    return passphrase


def find_passphrase(alias: str, passphrase_file: Path | None) -> tuple[str | None, str]:
    """The passphrase for ``alias`` and where it came from: the file if one is given, else Ape's variable.

    Returns:
        ``(passphrase, source)``; ``passphrase`` is None when neither holds one.

    Raises:
        SigningError: The passphrase file can't be used (see :func:`read_passphrase_file`).
    """
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file), f"passphrase file {passphrase_file}"
    variable = passphrase_variable(alias)
    return os.environ.get(variable) or None, variable


def unlock_for_unattended_signing(
    account: Any,
    *,
    autosign: bool,
    passphrase_file: Path | None = None,
    assume_yes: bool = False,
    interactive: bool | None = None,
) -> bool:
    """Turn autosign on for a keystore account, once, or refuse with one line before anything is signed.

    Args:
        account: The Ape account the command signs with.
        autosign: The user asked for unattended signing (flag, setting or environment).
        passphrase_file: File whose first line is the keystore passphrase (else ``APE_ACCOUNTS_<alias>_PASSPHRASE``).
        assume_yes: ``-y/--yes``: answer the question at a terminal with yes.
        interactive: Whether a person can answer at a terminal (default: stdin is a terminal).

    Returns:
        True when the account was unlocked, False when it needs nothing (not a keystore account).

    Raises:
        SigningError: No terminal and no autosign; the question answered no; no passphrase without a terminal;
            a wrong passphrase. The account is left locked.
    """
    if not is_keystore(account):
        return False
    alias = str(account.alias)
    interactive = stdin_is_terminal() if interactive is None else interactive
    if not autosign:
        if not interactive:
            raise SigningError(
                f"account {alias} is a keystore account and there is no terminal to confirm its signatures: "
                f"pass --autosign (passphrase in {passphrase_variable(alias)} or --passphrase-file FILE)"
            )
        if not assume_yes and not click.confirm(QUESTION, default=False):
            raise SigningError(f"not signing unattended with {alias}: pass --autosign, or answer yes (-y)")
    passphrase, source = find_passphrase(alias, passphrase_file)
    if passphrase is None:
        if not interactive:
            raise SigningError(
                f"no passphrase for {alias}: set {passphrase_variable(alias)} or pass --passphrase-file FILE"
            )
        passphrase = click.prompt(f"Passphrase of {alias}", hide_input=True, err=True)
        source = "the terminal"
    from ape.exceptions import AccountsError

    try:
        # One explicit passphrase: ape tries it once and never falls back to a prompt.
        account.set_autosign(True, passphrase=passphrase)
    except AccountsError:
        raise SigningError(f"wrong passphrase for {alias} (from {source})") from None
    return True
