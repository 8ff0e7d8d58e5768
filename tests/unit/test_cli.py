"""The ``ape ichain`` CLI through real subprocesses (an import error in the plugin would only show as
"No such command", so every check runs the installed plugin), against the session's anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ichain.market import Status

APE = str(Path(sys.executable).with_name("ape"))
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
COMMANDS = ("provide", "submit", "status", "pools", "providers", "validators", "rate", "refund", "withdraw", "account",
            "demo", "sandbox", "web")


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([APE, "ichain", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_help__plugin_installed__lists_every_command():
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"  {command} " in proc.stdout, command


@pytest.mark.parametrize("command", ["provide", "submit", "status", "pools", "providers", "validators", "rate",
                                     "refund", "withdraw"])
def test_cli_command_help__any_marketplace_command__takes_network_and_account(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--network" in proc.stdout and "--account" in proc.stdout


def test_account_new__fresh_alias__creates_an_ape_keystore_account(tmp_path):
    env = {"APE_DATA_FOLDER": str(tmp_path / "ape"), "ICHAIN_PASSPHRASE": "correct horse battery staple"}
    proc = run("account", "new", "alice", env=env)
    assert proc.returncode == 0, proc.stderr
    address = proc.stdout.split("created account alice: ")[1].split()[0]
    keyfile = json.loads((tmp_path / "ape" / "accounts" / "alice.json").read_text())
    assert keyfile["address"].lower() == address[2:].lower()
    again = run("account", "new", "alice", env=env)
    assert "already exists" in _one_error_line(again)


def test_providers__registered_workers__ranked_by_score_then_price(node, cli_market, accounts):
    from ichain._cli._common import get_market
    from ichain.transfer import KeyPair

    market = get_market(cli_market.market)
    for idx, price in ((3, 5 * 10**15), (4, 10**15)):
        if not market.worker(accounts[idx].address).registered:
            market.register(KeyPair.generate().public_bytes, price, sender=accounts[idx])
    proc = run("providers", "--network", node, "--market", cli_market.market, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    addrs = [r["address"] for r in rows]
    cheap, dear = accounts[4].address, accounts[3].address
    assert addrs.index(cheap) < addrs.index(dear)  # same (prior) score and count: cheaper first


def test_pools__fresh_market__shows_available_workers_json(node, cli_market):
    proc = run("pools", "--network", node, "--market", cli_market.market, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "pending" in data and "available" in data


def test_status__unknown_task__one_line_error(node, cli_market):
    line = _one_error_line(run("status", "424242", "--network", node, "--market", cli_market.market))
    assert "424242" in line


def test_rate__not_requester__one_line_error_before_sending(node, cli_market):
    line = _one_error_line(run("rate", "1", "--provider", "5", "--network", node, "--market", cli_market.market,
                               "--account", "TEST::5"))
    assert "task" in line.lower()


def test_withdraw__nothing_owed__says_so(node, cli_market):
    proc = run("withdraw", "--network", node, "--market", cli_market.market, "--account", "TEST::6")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to withdraw" in proc.stdout


def test_submit__bad_task_folder__one_line_error_no_transaction(node, cli_market, tmp_path, accounts):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "task.py").write_text("print('no manifest')\n")
    nonce = accounts[0].nonce
    line = _one_error_line(run("submit", str(bad), "--network", node, "--market", cli_market.market, "--account",
                               "TEST::0", "--state-dir", str(tmp_path / "s")))
    assert line.startswith("Error: ")
    assert accounts[0].nonce == nonce


def test_provide__state_of_another_market__one_line_error(node, cli_market, tmp_path):
    from ichain.daemon.state import DaemonState

    address = "0x976ea74026e726554db657fa54763abd0c3a0aa9"  # TEST::6
    st = DaemonState(tmp_path / address / "daemon-31337.sqlite")
    st.bind(31337, "0x" + "11" * 20)
    st.close()
    line = _one_error_line(run("provide", "--network", node, "--market", cli_market.market, "--account", "TEST::6",
                               "--state-dir", str(tmp_path)))
    assert "use another --state-dir" in line


def test_providers__unrated_worker__json_rating_null_and_price_in_wei(node, cli_market, accounts):
    from ichain._cli._common import get_market
    from ichain.transfer import KeyPair

    market = get_market(cli_market.market)
    if not market.worker(accounts[4].address).registered:
        market.register(KeyPair.generate().public_bytes, 10**15, sender=accounts[4])
    proc = run("providers", "--network", node, "--market", cli_market.market, "--json")
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout.strip().splitlines()[-1]) if r["address"] == accounts[4].address)
    assert row["provider"] == {"score": 3.0, "ratings": 0, "mean": None}  # the prior, not a rating
    assert (row["validator"]["ratings"], row["missed"], row["price"]) == (0, 0, 10**15)


def _workers(market, accounts):
    """Provider 3 trusting validator 4, both registered."""
    from ichain.transfer import KeyPair

    keys = {}
    for worker in (accounts[3], accounts[4]):
        keys[worker.address] = KeyPair.generate()
        if not market.worker(worker.address).registered:
            market.register(keys[worker.address].public_bytes, 10**15, sender=worker)
        else:
            market.update(keys[worker.address].public_bytes, 10**15, True, sender=worker)
    if not market.trusts(accounts[3].address, accounts[4].address):
        market.set_trust(accounts[4].address, True, sender=accounts[3])
    return keys


def test_validators__provider_trusted_set__listed_with_its_record(node, cli_market, accounts):
    from ichain._cli._common import get_market

    _workers(get_market(cli_market.market), accounts)
    proc = run("validators", "--provider", accounts[3].address, "--network", node, "--market", cli_market.market,
               "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["address"] for r in rows] == [accounts[4].address]
    assert rows[0]["validator"]["ratings"] == 0 and rows[0]["missed"] == 0


def test_rate__task_with_a_request_session__rating_recorded_in_the_session(node, cli_market, accounts, tmp_path):
    """``ape ichain rate`` of a task submitted from this machine goes through its session, whose session.json
    then holds the ratings, not only the chain."""
    from ichain._cli._common import get_market
    from ichain.config import load_config
    from ichain.requester import RequesterSession
    from ichain.transfer.envelope import Envelope

    market = get_market(cli_market.market)
    keys = _workers(market, accounts)
    provider, validator = accounts[3], accounts[4]
    config = load_config(state_dir=tmp_path / "state")
    session = RequesterSession.prepare(DIGITS, market=market, account=accounts[0], config=config)
    try:
        tid = session.post(provider=provider.address, validator=validator.address, timeout=60)
    finally:
        session.close()
    result = bytes(range(1, 33))
    market.submit_result(tid, result, Envelope(keys[provider.address].public_bytes, (b"\x01",)).encode(),
                         sender=provider)
    market.submit_verdict(tid, result, True, Envelope(keys[validator.address].public_bytes, (b"\x01",)).encode(),
                          sender=validator)
    proc = run("rate", str(tid), "--provider", "4", "--validator", "5", "--network", node, "--market",
               cli_market.market, "--account", "TEST::0", "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((session.root / "session.json").read_text())
    assert (saved["rating"], saved["validator_rating"], saved["stage"], saved["chain_status"]) == (4, 5, "rated",
                                                                                                   "Rated")


def test_rate__rating_out_of_range__the_sdk_s_one_line_error(node, cli_market):
    line = _one_error_line(run("rate", "1", "--provider", "9", "--network", node, "--market", cli_market.market,
                               "--account", "TEST::5"))
    assert "rating must be 1..5" in line


HOSTILE_STDERR = ("Traceback (most recent call last):\n  File \"/task/task.py\", line 9, in <module>\n"
                  "\x1b]0;pwned\x07\x1b[2J\x1b[1;31mraise ValueError\x1b[0m \u202eevil\r\n"
                  "ValueError: the script broke \x1b[5mblink\x1b[0m\n")


def test_submit__script_raises_at_the_provider__prints_the_error_line_neutralised_and_does_not_rate(
    node, cli_market, accounts, tmp_path
):
    """The provider (played here) reports a failing run with a stranger's escape sequences in stderr: `submit`
    ends within seconds of the report, prints the exit code and the script's error line, lets no control
    character reach the terminal, and rates nothing on the user's behalf. With --json (the steps then on stderr)
    stdout is one document with the README's keys (test_cli_conventions.py names this test for submit)."""
    from cli_helpers import readme_json_keys

    import time

    from ichain._cli._common import get_market
    from ichain.transfer import TransferContext
    from ichain.transfer.envelope import Envelope
    from ichain.transfer.report import seal_report

    market = get_market(cli_market.market)
    keys = _workers(market, accounts)
    provider, validator = accounts[3], accounts[4]
    before = int(market.last_task_id())
    proc = subprocess.Popen(
        [APE, "ichain", "submit", str(DIGITS), "--network", node, "--market", cli_market.market, "--account",
         "TEST::0", "--state-dir", str(tmp_path / "state"), "--provider", provider.address, "--validator",
         validator.address, "--timeout", "600", "--wait-timeout", "120", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        end = time.time() + 90
        while int(market.last_task_id()) == before:
            assert proc.poll() is None and time.time() < end, proc.communicate()
            time.sleep(0.2)
        tid = before + 1
        posted = next(e for e in market.events(0) if e.name == "TaskPosted" and e.task_id == tid)
        requester_key = Envelope.decode(bytes(posted.locator)).sender_key
        ctx = TransferContext(int(chain_id(node)), cli_market.market, tid, "failure-report", accounts[0].address,
                              keys[provider.address].public_bytes)
        report = seal_report(requester_key, ctx, 1, "execute", HOSTILE_STDERR, keys[provider.address])
        market.report_failure(tid, report, sender=provider)
        reported = time.time()
        out, err = proc.communicate(timeout=60)
        took = time.time() - reported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert took < 30, took
    assert "FAILED at the provider" in err and "stage execute, exit code 1" in err, err
    assert "error: ValueError: the script broke" in err, err
    for raw in ("\x1b", "\x07", "\u202e", "\r"):
        assert raw not in out + err, repr(raw)
    assert "\\x1b" in err  # shown as a visible escape
    assert "not rated: rate it with `ape ichain rate" in err
    assert market.task(tid).status == Status.Failed  # no rating was sent for the user
    result = json.loads(out)  # all of stdout: one document
    assert (result["task_id"], result["status"], result["rating"], result["result_dir"]) == (tid, "Failed", None,
                                                                                              None)
    assert result["failure"]["exit_code"] == 1 and result["refund"] > 0 and result["transactions"] == 2
    required, optional = readme_json_keys()["submit"]
    assert required <= set(result) <= required | optional


def test_submit__provider_declines__one_line_refund_and_exit_non_zero(node, cli_market, accounts, tmp_path):
    """The provider (played here) declines the task it cannot run, with a stranger's escape sequence in its
    reason: `submit` ends with one line naming the reason and the refunded deposit, lets no control character
    reach the terminal, rates nothing and exits non-zero; with --json stdout is still one document."""
    from cli_helpers import readme_json_keys

    import time

    from ichain._cli._common import get_market

    market = get_market(cli_market.market)
    _workers(market, accounts)
    provider, validator = accounts[3], accounts[4]
    before = int(market.last_task_id())
    proc = subprocess.Popen(
        [APE, "ichain", "submit", str(DIGITS), "--network", node, "--market", cli_market.market, "--account",
         "TEST::0", "--state-dir", str(tmp_path / "state"), "--provider", provider.address, "--validator",
         validator.address, "--timeout", "600", "--wait-timeout", "120", "--rating", "5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        end = time.time() + 90
        while int(market.last_task_id()) == before:
            assert proc.poll() is None and time.time() < end, proc.communicate()
            time.sleep(0.2)
        tid = before + 1
        market.decline(tid, "needs runtime ichain-torch\x1b[2J; this provider has ichain-runtime", sender=provider)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    task = market.task(tid)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert (f"the provider declined: needs runtime ichain-torch\\x1b[2J; this provider has ichain-runtime; your "
            f"deposit of {task.deposit} wei is refunded") in err, err
    assert "\x1b" not in out + err and "Traceback" not in err
    assert task.status == Status.Declined  # not rated, though --rating was given
    result = json.loads(out)
    assert (result["task_id"], result["status"], result["refund"], result["rating"]) == (tid, "Declined",
                                                                                        task.deposit, None)
    required, optional = readme_json_keys()["submit"]
    assert required <= set(result) <= required | optional


def chain_id(node: str) -> int:
    from ape import chain

    return chain.chain_id


@pytest.mark.parametrize("answers, expected", [("9\nx\n4\n\n", (4, 0)), ("\n", None), ("2\n5\n", (2, 5))],
                         ids=["asks-again", "empty-rates-later", "both"])
def test_prompt_rating__typed_answers__only_the_user_s_own_ratings(answers, expected):
    """The interactive rating: an answer outside 1..5 is asked again, an empty one gives no rating (never 5)."""
    import click
    from click.testing import CliRunner

    from ichain._cli.request import _prompt_rating

    @click.command()
    def ask():
        click.echo(f"answer={_prompt_rating(Status.Completed, 'P', 'V')!r}")

    result = CliRunner().invoke(ask, input=answers)
    assert result.exit_code == 0, result.output
    assert f"answer={expected!r}" in result.output
