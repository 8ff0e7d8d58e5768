"""A provider daemon with a real keystore account (``ape ichain account new``, not ``TEST::``), run the way a service
runs it: stdin closed, the passphrase from the environment or a file.

- With ``--autosign`` it registers, serves a task a requester posts to it (validated by a TEST daemon it trusts),
  the task is accepted and it is paid; ``ape ichain provider status`` then shows the task, the earnings and the
  last block.
- Without ``--autosign``, or with a wrong passphrase, it stops within seconds with one line, having sent nothing.
- The systemd example's ExecStart line (``--autosign --passphrase-file``) starts it, ``provider status`` sees it
  running, and SIGTERM (the unit's KillSignal) stops it cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon_helpers import OK_TASK, Requester, task_folder
from ichain._cli.demo import provide_argv
from ichain.market import Status
from ichain.market.types import burn_of, collateral_for

from marketplace_helpers import task_status, wait_until
from systemd_unit import env_file, exec_start_argv

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(420)]

APE = str(Path(sys.executable).with_name("ape"))
PRICE, FEE = 10**16, 10**15
ALIAS = "keyprov"
PASSPHRASE = "correct horse battery staple"


@dataclass
class Keystore:
    """A keystore account in its own Ape data folder."""

    alias: str
    address: str
    data_folder: Path

    def env(self, passphrase: str | None = None) -> dict[str, str]:
        """The environment of a command using this account (its passphrase in Ape's variable, if given)."""
        env = {"APE_DATA_FOLDER": str(self.data_folder)}
        if passphrase is not None:
            env[f"APE_ACCOUNTS_{self.alias}_PASSPHRASE"] = passphrase
        return env


def ape(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``ape ARGS`` with stdin closed (no terminal, as under systemd)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APE_ACCOUNTS_")}
    return subprocess.run([APE, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**clean, **env})


@pytest.fixture(scope="module")
def keystore(tmp_path_factory) -> Keystore:
    """``ape ichain account new`` in a fresh data folder (the passphrase from ICHAIN_PASSPHRASE, as it supports)."""
    folder = tmp_path_factory.mktemp("ape-data")
    env = {"APE_DATA_FOLDER": str(folder)}
    made = ape("ichain", "account", "new", ALIAS, env={**env, "ICHAIN_PASSPHRASE": PASSPHRASE})
    assert made.returncode == 0, made.stderr
    address = made.stdout.split(f"created account {ALIAS}: ")[1].split()[0]
    listed = ape("accounts", "list", env=env)
    assert listed.returncode == 0 and ALIAS in listed.stdout and address in listed.stdout, listed.stdout + listed.stderr
    return Keystore(ALIAS, address, folder)


@pytest.fixture
def funded(keystore, accounts) -> Keystore:
    """The keystore account with ether for gas and collateral, sent from a TEST account."""
    accounts[7].transfer(keystore.address, 10**19)
    return keystore


@pytest.fixture
def requester(e2e_market, accounts, chain, tmp_path):
    r = Requester(e2e_market, accounts[0], tmp_path / "requester", int(chain.chain_id)).start()
    yield r
    r.stop()


def _nonce(chain, address: str) -> int:
    return int(chain.provider.web3.eth.get_transaction_count(address))


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a refused start prints on stderr (nothing else there, no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def _status(node_uri: str, keystore: Keystore, state: Path) -> dict:
    proc = ape("ichain", "provider", "status", "--network", node_uri, "--account", keystore.alias, "--state-dir",
               str(state), "--json", env=keystore.env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # ape's "Connecting to..." line may come first


def test_provide__keystore_autosign_stdin_closed__registers_serves_a_task_and_is_paid(
    daemons, e2e_market, requester, funded, accounts, chain, tmp_path, node_uri
):
    validator = accounts[2]
    daemons.start(2, FEE)
    proc = daemons.start(5, PRICE, account=funded.alias, env=funded.env(PASSPHRASE),
                         extra=("--autosign", "--trust", validator.address))
    assert e2e_market.worker(funded.address).registered
    wait_until(lambda: e2e_market.trusts(funded.address, validator.address), 60, "the provider to trust its validator")

    tid = requester.post(task_folder(tmp_path, "ok", OK_TASK), provider=funded.address, validator=validator.address,
                         price=PRICE, fee=FEE, timeout=600)
    wait_until(lambda: task_status(e2e_market, tid) == Status.Completed, 180, "the task to be accepted",
               interval=0.5, check=lambda: proc.alive() or pytest.fail(proc.tail(10)))
    verdict = requester.event(tid, "VerdictSubmitted")
    assert verdict.accepted
    assert verdict.provider_paid == PRICE - burn_of(PRICE) + collateral_for(PRICE, FEE)

    def withdrawn() -> int:
        return sum(e.amount for e in e2e_market.events(0) if e.event_name == "Withdrawn"
                   and e.account == funded.address)

    # The daemon withdraws what the task credited it: the credit goes to zero, the account's balance up by it.
    wait_until(lambda: withdrawn() >= verdict.provider_paid and e2e_market.credit(funded.address) == 0, 60,
               "the provider to withdraw its pay")
    assert "Sign:" not in proc.log_path.read_text()  # no prompt anywhere in its life

    data = _status(node_uri, funded, proc.state_dir)
    assert data["address"] == funded.address and data["running"] is True and data["pid"] == proc.proc.pid
    task = next(t for t in data["tasks"] if t["task_id"] == tid and t["role"] == "provider")
    assert task["status"] == "Completed" and task["earned"] == PRICE - burn_of(PRICE)
    assert data["earnings"]["provider"] == PRICE - burn_of(PRICE)
    assert data["credit"] == 0
    assert data["checkpoint"] >= verdict.block_number
    assert data["checkpoint_time"] == chain.blocks[data["checkpoint"]].timestamp
    assert data["worker"] == {**data["worker"], "registered": True, "price": PRICE, "available": True}


def test_provide__keystore_without_autosign_stdin_closed__exits_at_once_with_one_line_nothing_sent(
    funded, e2e_market, chain, tmp_path, node_uri
):
    before = _nonce(chain, funded.address)
    started = time.time()
    # Even with the passphrase at hand: signing unattended needs the explicit --autosign.
    proc = ape(*provide_argv(node_uri, funded.alias, e2e_market.address, tmp_path / "state", price=str(PRICE))[1:],
               env=funded.env(PASSPHRASE), timeout=60)
    assert time.time() - started < 30
    assert proc.returncode == 1
    line = _error_line(proc)
    assert "keystore account" in line and "--autosign" in line
    assert _nonce(chain, funded.address) == before
    assert not e2e_market.worker(funded.address).registered


def test_provide__keystore_autosign_wrong_passphrase__one_line_nothing_sent(funded, e2e_market, chain, tmp_path,
                                                                            node_uri):
    before = _nonce(chain, funded.address)
    argv = provide_argv(node_uri, funded.alias, e2e_market.address, tmp_path / "state", price=str(PRICE),
                        extra=("--autosign",))
    proc = ape(*argv[1:], env=funded.env("not the passphrase"), timeout=60)
    assert proc.returncode == 1
    assert _error_line(proc) == f"Error: wrong passphrase for {ALIAS} (from APE_ACCOUNTS_{ALIAS}_PASSPHRASE)"
    assert _nonce(chain, funded.address) == before


def test_systemd_exec_start__passphrase_file__runs_reports_running_and_stops_on_sigterm(
    daemons, funded, e2e_market, chain, tmp_path, node_uri
):
    """The example unit's ExecStart line as systemd would run it (its variables from the example env file, with this
    test's node, account and passphrase file), plus the test's market, state folder and price."""
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    values = {**env_file(), "ICHAIN_NETWORK": node_uri, "ICHAIN_ACCOUNT": funded.alias}
    argv = [APE if i == 0 else passphrase_path(arg, passphrase, values) for i, arg in enumerate(exec_start_argv())]
    proc = daemons.start(6, PRICE, account=funded.alias, env=funded.env(), argv=argv)  # no passphrase variable
    assert e2e_market.worker(funded.address).registered

    running = _status(node_uri, funded, proc.state_dir)
    assert running["running"] is True and running["pid"] == proc.proc.pid
    assert running["checkpoint"] is not None

    assert proc.stop() == 0  # SIGTERM, the unit's KillSignal: a graceful stop
    assert "provider daemon stopped" in proc.log_path.read_text()
    stopped = _status(node_uri, funded, proc.state_dir)
    assert stopped["running"] is False and stopped["pid"] is None
    assert stopped["worker"]["registered"] is True


def passphrase_path(arg: str, passphrase: Path, values: dict[str, str]) -> str:
    """One ExecStart word with systemd's ``${VAR}`` expanded and the unit's passphrase path moved to the test's."""
    for name, value in values.items():
        arg = arg.replace("${" + name + "}", value)
    return str(passphrase) if arg == "/etc/ichain/passphrase" else arg


def test_web__keystore_no_passphrase_stdin_closed__one_line_and_nothing_served(keystore, node_uri, tmp_path):
    proc = ape("ichain", "web", "--network", node_uri, "--account", keystore.alias, "--state-dir",
               str(tmp_path / "state"), env=keystore.env(), timeout=60)
    assert proc.returncode == 1
    assert _error_line(proc) == (f"Error: no passphrase for {ALIAS}: set APE_ACCOUNTS_{ALIAS}_PASSPHRASE "
                                 "or pass --passphrase-file FILE")
    assert "iChain web page on" not in proc.stdout


def test_web__keystore_passphrase_from_the_environment__unlocked_once_and_the_page_served(keystore, node_uri,
                                                                                        tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APE_ACCOUNTS_")}
    proc = subprocess.Popen([APE, "ichain", "web", "--network", node_uri, "--account", keystore.alias, "--state-dir",
                             str(tmp_path / "state")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**clean, **keystore.env(PASSPHRASE)})
    try:
        assert proc.stdout is not None
        # Blocks until the page is served (or the command ends); ape's own log lines ("INFO: Connecting...",
        # "WARNING: Danger! This account will now sign...") come first.
        line = next((x for x in proc.stdout if not x.startswith(("INFO:", "WARNING:"))), "")
        assert line.startswith("iChain web page on http://127.0.0.1:") and "/?token=" in line, line
        assert keystore.address in line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"{ALIAS} unlocked" in err and "Passphrase" not in err
