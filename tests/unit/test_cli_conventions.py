"""The conventions every ``ape ichain`` command follows: ``--json`` (one document on stdout, the README's keys),
``--verbosity LEVEL``, ``-y`` and the questions asked only at a terminal, and the exit codes (130 on Ctrl-C).

Every check runs the installed plugin in a subprocess (at a pseudo-terminal where a question is asked) against
the session's anvil."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import click
import pytest
from cli_helpers import APE, ROOT, Terminal, error_lines, readme_json_keys, run, workers

from ichain.market import Status

DIGITS = ROOT / "examples" / "digits"

#: Commands whose --json is checked by a test that already runs them end to end (too dear to run here).
COVERED_ELSEWHERE = {
    "submit": "tests/unit/test_cli.py::"
              "test_submit__script_raises_at_the_provider__prints_the_error_line_neutralised_and_does_not_rate",
    "demo": "tests/e2e/test_demo.py::test_demo__no_rating_and_no_terminal__never_rates_for_the_user",
    "deploy": "tests/e2e/test_wheel_install.py::"
              "test_wheel_deploy__anvil_posing_as_sepolia__verified_recorded_and_found_from_another_folder",
    "provider status": "tests/unit/test_provider_status.py::"
                       "test_provider_status__state_of_a_stopped_daemon__tasks_earnings_and_last_block",
}
#: Servers: they print no result, so they have no --json (the README says so).
SERVERS = {"provide", "web"}


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(_leaves(command, (*prefix, name)))
        else:
            out[" ".join((*prefix, name))] = command
    return out


def _commands() -> dict[str, click.Command]:
    from ichain._cli import cli

    return _leaves(cli)


def _json_commands() -> set[str]:
    return {name for name, cmd in _commands().items() if any(p.name == "as_json" for p in cmd.params)}


@pytest.fixture
def market(cli_market):
    from ichain._cli._common import get_market

    return get_market(cli_market.market)


def _one_document(proc: subprocess.CompletedProcess) -> object:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # the whole of stdout: exactly one JSON document


def _check_keys(name: str, data: object) -> None:
    required, optional = readme_json_keys()[name]
    for item in data if isinstance(data, list) else [data]:
        assert isinstance(item, dict), (name, item)
        assert required <= set(item) <= required | optional, (name, sorted(item), sorted(required))


def _completed_task(market, accounts, keys) -> int:
    """A task of TEST::0 with TEST::3 as provider and TEST::4 as validator, accepted (Completed)."""
    from ichain.transfer.envelope import Envelope

    provider, validator = accounts[3], accounts[4]
    tid = market.post(b"\x07" * 32, validator=validator.address, price=10**15, validator_fee=10**15,
                      provider=provider.address, locator=b"\x01", timeout=60, sender=accounts[0]).task_id
    result = bytes(range(1, 33))
    market.submit_result(tid, result, Envelope(keys[provider.address].public_bytes, (b"\x01",)).encode(),
                         sender=provider)
    market.submit_verdict(tid, result, True, Envelope(keys[validator.address].public_bytes, (b"\x01",)).encode(),
                          sender=validator)
    assert market.task(tid).status == Status.Completed
    return int(tid)


# ------------------------------------------------------------------ --json
def test_json__every_command__covered_here_or_by_a_named_test():
    """A command with --json that no check here runs and no named test covers fails here by its name."""
    here = set(JSON_RUNS)
    missing = _json_commands() - here - set(COVERED_ELSEWHERE)
    assert not missing, f"commands with --json and no JSON test: {sorted(missing)}"
    for name, where in COVERED_ELSEWHERE.items():
        path, test = where.split("::")
        assert f"def {test}(" in (ROOT / path).read_text(), where
        assert name in _json_commands(), name
    without = {name for name in _commands() if name not in _json_commands()}
    assert without == SERVERS, f"commands without --json that are not servers: {sorted(without - SERVERS)}"


def test_json__every_command__documented_in_the_readme():
    documented = {name.replace(" TASK", "") for name in readme_json_keys()}
    assert documented == _json_commands(), (sorted(documented), sorted(_json_commands()))


def _run_providers(node, cli_market, market, accounts, tmp_path):
    workers(market, accounts[3], accounts[4])
    data = _one_document(run("providers", "--network", node, "--market", cli_market.market, "--json"))
    assert data, data
    _check_keys("providers", data)


def _run_validators(node, cli_market, market, accounts, tmp_path):
    workers(market, accounts[3], accounts[4])
    data = _one_document(run("validators", "--provider", accounts[3].address, "--network", node, "--market",
                             cli_market.market, "--json"))
    assert [row["address"] for row in data] == [accounts[4].address]
    _check_keys("validators", data)


def _run_pools(node, cli_market, market, accounts, tmp_path):
    _check_keys("pools", _one_document(run("pools", "--network", node, "--market", cli_market.market, "--json")))


def _run_status(node, cli_market, market, accounts, tmp_path):
    tid = _completed_task(market, accounts, workers(market, accounts[3], accounts[4]))
    data = _one_document(run("status", str(tid), "--network", node, "--market", cli_market.market, "--json"))
    assert (data["task_id"], data["status"], data["price"]) == (tid, "Completed", 10**15)
    _check_keys("status TASK", data)
    data = _one_document(run("status", "--account", "TEST::0", "--state-dir", str(tmp_path / "s"), "--network",
                             node, "--market", cli_market.market, "--json"))
    _check_keys("status", data)


def _run_rate(node, cli_market, market, accounts, tmp_path):
    tid = _completed_task(market, accounts, workers(market, accounts[3], accounts[4]))
    data = _one_document(run("rate", str(tid), "--provider", "4", "--validator", "5", "--account", "TEST::0",
                             "--state-dir", str(tmp_path / "s"), "--network", node, "--market", cli_market.market,
                             "--json"))
    assert data == {"task_id": tid, "provider_rating": 4, "validator_rating": 5, "status": "Rated"}
    _check_keys("rate", data)


def _run_refund(node, cli_market, market, accounts, tmp_path):
    workers(market, accounts[3], accounts[4])
    tid = market.post(b"\x08" * 32, validator=accounts[4].address, price=10**15, validator_fee=10**15,
                      sender=accounts[0]).task_id
    data = _one_document(run("refund", str(tid), "--account", "TEST::0", "--state-dir", str(tmp_path / "s"),
                             "--network", node, "--market", cli_market.market, "--json"))
    assert (data["status"], data["credit"]) == ("Cancelled", int(market.credit(accounts[0].address)))
    assert data["credit"] >= 2 * 10**15
    _check_keys("refund", data)
    # the credit is what withdraw then pays out
    data = _one_document(run("withdraw", "--account", "TEST::0", "--network", node, "--market", cli_market.market,
                             "--json"))
    assert data["address"] == accounts[0].address and data["amount"] >= 2 * 10**15
    _check_keys("withdraw", data)


def _run_withdraw(node, cli_market, market, accounts, tmp_path):
    data = _one_document(run("withdraw", "--account", "TEST::6", "--network", node, "--market", cli_market.market,
                             "--json"))
    assert data == {"address": accounts[6].address, "amount": 0}
    _check_keys("withdraw", data)


def _run_account_new(node, cli_market, market, accounts, tmp_path):
    env = {"APE_DATA_FOLDER": str(tmp_path / "ape"), "ICHAIN_PASSPHRASE": "correct horse battery staple"}
    data = _one_document(run("account", "new", "carol", "--json", env=env))
    assert "mnemonic" not in data and data["alias"] == "carol"
    _check_keys("account new", data)
    data = _one_document(run("account", "new", "dave", "--json", "--show-mnemonic", env=env))
    assert len(data["mnemonic"].split()) >= 12
    _check_keys("account new", data)


def _run_sandbox_build(node, cli_market, market, accounts, tmp_path):
    data = _one_document(run("sandbox", "build", "--json", timeout=600))
    assert data["up_to_date"] is True
    _check_keys("sandbox build", data)


def _run_sandbox_check(node, cli_market, market, accounts, tmp_path):
    data = _one_document(run("sandbox", "check", "--json", timeout=300))
    assert data["self_test"]["ok"] is True
    _check_keys("sandbox check", data)


JSON_RUNS = {"providers": _run_providers, "validators": _run_validators, "pools": _run_pools,
             "status": _run_status, "rate": _run_rate, "refund": _run_refund, "withdraw": _run_withdraw,
             "account new": _run_account_new, "sandbox build": _run_sandbox_build,
             "sandbox check": _run_sandbox_check}


@pytest.mark.parametrize("name", sorted(JSON_RUNS))
def test_json__command_run__stdout_is_one_document_with_the_readme_keys(name, node, cli_market, market, accounts,
                                                                        tmp_path):
    JSON_RUNS[name](node, cli_market, market, accounts, tmp_path)


# ------------------------------------------------------------------ --verbosity
def test_verbosity__every_command__takes_ape_s_level_option():
    lacking = [name for name, cmd in _commands().items()
               if not any("--verbosity" in p.opts and "-v" in p.opts for p in cmd.params)]
    assert not lacking, lacking


def test_verbosity__bad_level__usage_error(node, cli_market):
    proc = run("pools", "-v", "LOUD", "--network", node, "--market", cli_market.market)
    assert proc.returncode == 2
    assert "Invalid value for '--verbosity'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("level, shown, stop, code", [("WARNING", False, signal.SIGINT, 130),
                                                      ("INFO", True, signal.SIGTERM, 0)],
                         ids=["warning-ctrl-c", "info-sigterm"])
def test_provide__verbosity_level__info_lines_shown_or_hidden_and_the_stop_signal_s_exit_code(
    level, shown, stop, code, node, cli_market, market, accounts, tmp_path
):
    """The daemon's info lines show at INFO and not at WARNING; Ctrl-C stops it with 130 and one line, SIGTERM (a
    service manager) with 0."""
    worker = accounts[7]
    proc = subprocess.Popen([APE, "ichain", "provide", "-v", level, "--network", node, "--market",
                             cli_market.market, "--account", "TEST::7", "--state-dir", str(tmp_path),
                             "--price", "0.001 ether"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    # Signalled once it serves: at INFO its "watching market" line comes after the stop signals are handled; at
    # WARNING no line does, and the ready line (printed before) is enough for Ctrl-C, which Ape handles earlier.
    ready = b"watching market" if shown else b"Ctrl-C to stop"
    seen = b""
    try:
        end = time.monotonic() + 90
        while ready not in seen:
            assert proc.poll() is None and time.monotonic() < end, seen.decode()[-3000:]
            if select.select([proc.stderr], [], [], 0.2)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
        assert market.worker(worker.address).registered
        proc.send_signal(stop)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = (seen + rest).decode()
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and ("Interrupted." in err.splitlines()[-1]) is (code == 130), err[-3000:]
    assert (f"INFO ichain.daemon: registered {worker.address}" in err) is shown, err[-3000:]
    assert (" INFO " in err) is shown, err[-3000:]


# ------------------------------------------------------------------ questions at a terminal, -y
def _submit_args(node, cli_market, accounts, tmp_path, *extra):
    return ("submit", str(DIGITS), "--network", node, "--market", cli_market.market, "--account", "TEST::0",
            "--state-dir", str(tmp_path / "state"), "--provider", accounts[3].address, "--validator",
            accounts[4].address, "--timeout", "600", *extra)


def test_submit__at_a_terminal_answer_no__nothing_sent_and_debug_lines_shown(node, cli_market, market, accounts,
                                                                           tmp_path):
    workers(market, accounts[3], accounts[4])
    nonce = accounts[0].nonce
    term = Terminal(*_submit_args(node, cli_market, accounts, tmp_path, "-v", "DEBUG"))
    try:
        term.expect("post task digits paying 0.001 ETH to provider " + accounts[3].address)
        term.expect("deposit 0.002 ETH)? [y/N]")
        term.type("n")
        rc = term.wait()
    finally:
        term.close()
    assert rc == 1, term.output[-3000:]
    assert error_lines(term.output) == ["Error: not posted: the deposit was not confirmed (nothing sent)"]
    assert "DEBUG ichain.requester: session " in term.output  # the requester's steps at -v DEBUG
    assert accounts[0].nonce == nonce


def test_submit__at_a_terminal_with_yes__posts_without_asking_then_ctrl_c_exits_130(node, cli_market, market,
                                                                                   accounts, tmp_path):
    workers(market, accounts[3], accounts[4])
    nonce, before = accounts[0].nonce, int(market.last_task_id())
    term = Terminal(*_submit_args(node, cli_market, accounts, tmp_path, "-y"))
    try:
        term.expect(f"posted task {before + 1}")
        term.expect("task hosted")
        term.interrupt()
        rc = term.wait()
    finally:
        term.close()
    assert rc == 130, term.output[-3000:]
    assert "[y/N]" not in term.output and "Traceback" not in term.output, term.output[-3000:]
    assert term.output.rstrip().splitlines()[-1] == "Interrupted."
    assert accounts[0].nonce == nonce + 1 and market.task(before + 1).status == Status.Executing


def test_rate__at_a_terminal__no_sends_nothing_and_yes_rates(node, cli_market, market, accounts, tmp_path):
    tid = _completed_task(market, accounts, workers(market, accounts[3], accounts[4]))
    args = ("rate", str(tid), "--provider", "4", "--account", "TEST::0", "--state-dir", str(tmp_path / "s"),
            "--network", node, "--market", cli_market.market)
    nonce = accounts[0].nonce
    term = Terminal(*args)
    try:
        term.expect(f"rate task {tid}: provider 4 (a rating is final)? [y/N]")
        term.type("n")
        rc = term.wait()
    finally:
        term.close()
    assert rc == 1 and error_lines(term.output) == [f"Error: task {tid} not rated (nothing sent)"], term.output
    assert accounts[0].nonce == nonce and market.task(tid).status == Status.Completed
    term = Terminal(*args, "-y")
    try:
        rc = term.wait()
    finally:
        term.close()
    assert rc == 0 and "[y/N]" not in term.output, term.output
    assert market.task(tid).status == Status.Rated


def test_rate__doomed_rating_at_a_terminal__refused_before_any_question(node, cli_market, market, accounts,
                                                                       tmp_path):
    tid = _completed_task(market, accounts, workers(market, accounts[3], accounts[4]))
    term = Terminal("rate", str(tid), "--provider", "4", "--account", "TEST::5", "--network", node, "--market",
                    cli_market.market)
    try:
        rc = term.wait()
    finally:
        term.close()
    assert rc == 1 and "[y/N]" not in term.output, term.output
    assert len(error_lines(term.output)) == 1, term.output


def test_account_new__no_passphrase_and_no_terminal__one_line_error_no_keyfile(tmp_path):
    proc = run("account", "new", "erin", env={"APE_DATA_FOLDER": str(tmp_path / "ape"), "ICHAIN_PASSPHRASE": ""})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert error_lines(proc.stderr) == ["Error: no passphrase: give --passphrase or ICHAIN_PASSPHRASE, or run at a "
                                        "terminal"], proc.stderr
    assert not (tmp_path / "ape" / "accounts" / "erin.json").exists()


def test_account_new__at_a_terminal__passphrase_asked_twice(tmp_path):
    term = Terminal("account", "new", "frank", "--json",
                    env={"APE_DATA_FOLDER": str(tmp_path / "ape"), "ICHAIN_PASSPHRASE": ""})
    try:
        term.expect("Passphrase:")
        term.expect_hidden_input()
        term.type("correct horse battery staple")
        term.expect("Repeat for confirmation:")
        term.expect_hidden_input()
        term.type("correct horse battery staple")
        rc = term.wait()
    finally:
        term.close()
    assert rc == 0, term.output
    address = json.loads(term.output.strip().splitlines()[-1])["address"]
    keyfile = json.loads((tmp_path / "ape" / "accounts" / "frank.json").read_text())
    assert keyfile["address"].lower() == address[2:].lower()
    assert "correct horse" not in term.output  # the passphrase is not echoed
