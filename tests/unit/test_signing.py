"""Unlocking a real keystore account (:class:`ape_accounts.KeyfileAccount`) once for a daemon: where the passphrase
comes from, what is refused with one line, and that nothing prompts afterwards."""

from __future__ import annotations

import io
import json
import os
import sys

import click
import pytest
from eth_account import Account as EthAccount

from ichain._cli.signing import SigningError, read_passphrase_file, unlock_for_unattended_signing

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def keystore(tmp_path, monkeypatch):
    """A keystore account ``daemonkey`` in its own folder, without a passphrase in the environment."""
    from ape_accounts import KeyfileAccount

    path = tmp_path / "keys" / "daemonkey.json"
    path.parent.mkdir()
    path.write_text(json.dumps(EthAccount.encrypt(EthAccount.create().key, PASSPHRASE)))
    monkeypatch.delenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", raising=False)
    return KeyfileAccount(keyfile_path=path)


@pytest.fixture
def no_terminal(monkeypatch):
    """stdin at its end (as under systemd or with stdin closed): any prompt would abort at once."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def _passphrase_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "passphrase"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _signs_without_prompt(account) -> bool:
    """Sign a message with stdin at its end: a ``Sign:`` prompt would raise click's Abort."""
    return account.sign_message("ichain") is not None


def test_unlock__test_account__left_as_it_is(accounts, no_terminal):
    assert unlock_for_unattended_signing(accounts[0], autosign=False) is False


def test_unlock__keystore_without_autosign_and_no_terminal__one_line_naming_the_fix(keystore, no_terminal,
                                                                                    monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", PASSPHRASE)  # even a known passphrase is not consent
    with pytest.raises(SigningError, match="--autosign") as err:
        unlock_for_unattended_signing(keystore, autosign=False)
    assert "\n" not in str(err.value)
    assert keystore.locked


def test_unlock__autosign_and_passphrase_in_ape_variable__signs_without_prompt(keystore, no_terminal, monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", PASSPHRASE)
    assert unlock_for_unattended_signing(keystore, autosign=True) is True
    assert not keystore.locked
    assert _signs_without_prompt(keystore)


def test_unlock__autosign_and_wrong_passphrase__one_line_and_stays_locked(keystore, no_terminal, monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", "not it")
    with pytest.raises(SigningError, match="wrong passphrase for daemonkey .from APE_ACCOUNTS_daemonkey_PASSPHRASE"):
        unlock_for_unattended_signing(keystore, autosign=True)
    assert keystore.locked


def test_unlock__autosign_without_any_passphrase_and_no_terminal__names_both_sources(keystore, no_terminal):
    with pytest.raises(SigningError, match="APE_ACCOUNTS_daemonkey_PASSPHRASE or pass --passphrase-file"):
        unlock_for_unattended_signing(keystore, autosign=True)
    assert keystore.locked


def test_unlock__passphrase_file__first_line_used_before_the_variable(keystore, no_terminal, monkeypatch, tmp_path):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", "not it")
    path = _passphrase_file(tmp_path, f"{PASSPHRASE}\nsecond line ignored\n")
    assert unlock_for_unattended_signing(keystore, autosign=True, passphrase_file=path) is True
    assert _signs_without_prompt(keystore)


def test_unlock__wrong_passphrase_in_file__names_the_file(keystore, no_terminal, tmp_path):
    path = _passphrase_file(tmp_path, "not it\n")
    with pytest.raises(SigningError, match=f"from passphrase file {path}"):
        unlock_for_unattended_signing(keystore, autosign=True, passphrase_file=path)
    assert keystore.locked


@pytest.mark.parametrize(("text", "mode", "message"), [
    (PASSPHRASE, 0o644, "open to other users .mode 0644.: chmod 600"),
    (PASSPHRASE, 0o602, "open to other users"),
    ("\nsecond\n", 0o600, "the first line is empty"),
    (PASSPHRASE, 0o000, "can't be read"),
])
def test_read_passphrase_file__unusable_file__one_line(tmp_path, text, mode, message):
    path = _passphrase_file(tmp_path, text, mode)
    if mode == 0o000 and os.access(path, os.R_OK):
        pytest.skip("running as a user that reads any file (root): an unreadable file can't be made")
    with pytest.raises(SigningError, match=message) as err:
        read_passphrase_file(path)
    assert "\n" not in str(err.value)


def test_read_passphrase_file__missing__one_line(tmp_path):
    with pytest.raises(SigningError, match="does not exist"):
        read_passphrase_file(tmp_path / "nope")


def test_read_passphrase_file__group_readable_and_crlf__allowed_and_stripped(tmp_path):
    assert read_passphrase_file(_passphrase_file(tmp_path, f"{PASSPHRASE}\r\n", 0o640)) == PASSPHRASE


def test_unlock__terminal_without_autosign__asks_once_and_yes_unlocks(keystore, monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert unlock_for_unattended_signing(keystore, autosign=False, interactive=True) is True
    assert _signs_without_prompt(keystore)  # the one answer was the only line stdin had


def test_unlock__terminal_answer_no__refused_and_locked(keystore, monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    with pytest.raises(SigningError, match="not signing unattended"):
        unlock_for_unattended_signing(keystore, autosign=False, interactive=True)
    assert keystore.locked


def test_unlock__terminal_with_yes_option__no_question(keystore, no_terminal, monkeypatch):
    monkeypatch.setenv("APE_ACCOUNTS_daemonkey_PASSPHRASE", PASSPHRASE)
    assert unlock_for_unattended_signing(keystore, autosign=False, assume_yes=True, interactive=True) is True


@pytest.mark.filterwarnings("ignore::getpass.GetPassWarning")  # the test's stdin is no terminal to hide input on
def test_unlock__terminal_autosign_without_passphrase__asks_for_it_once(keystore, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSPHRASE}\n"))
    assert unlock_for_unattended_signing(keystore, autosign=True, interactive=True) is True
    assert _signs_without_prompt(keystore)


def test_locked_keystore__stdin_at_end__would_abort_not_hang(keystore, no_terminal):
    """What the daemon avoids: a locked keystore account's signature asks on stdin (and aborts without one)."""
    with pytest.raises(click.exceptions.Abort):
        keystore.sign_message("ichain")
