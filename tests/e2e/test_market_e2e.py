"""The marketplace end to end (protocol v2): real anvil, provider daemons as subprocesses, Docker sandbox,
direct transfer. Each test follows one task from a folder on disk to its settlement: accepted and released,
failed with a report, rejected in a dispute, or refunded after a silence."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ichain.daemon.state import DaemonState
from ichain.market import Status
from ichain.requester import RequestError, RequesterSession
from ichain.transfer import KeyPair

from marketplace_helpers import (
    DIGITS, MIN_TIMEOUT, VALIDATION_WINDOW, move_time, raising_task, task_status, wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(420)]

PRICE = 10**16
FEE = 2 * 10**15
APE = str(Path(sys.executable).with_name("ape"))


def _accuracy(metrics: dict) -> float:
    return float(next(v for k, v in metrics.items() if "acc" in k.lower()))


def _credit(market, who) -> int:
    return int(market.credit(who.address))


@pytest.fixture
def session_factory(e2e_market, requester, requester_config):
    sessions: list[RequesterSession] = []

    def make(task_dir: Path = DIGITS) -> RequesterSession:
        s = RequesterSession.prepare(task_dir, market=e2e_market, account=requester, config=requester_config)
        sessions.append(s)
        return s

    yield make
    for s in sessions:
        s.close()


def _pair(daemons, market, prov, val, *, validator_daemon: bool = True):
    """Start the provider's daemon trusting ``val`` (and the validator's daemon); wait for the trust on chain."""
    from ape import accounts

    index = {str(a.address): i for i, a in enumerate(accounts.test_accounts[:10])}
    daemons.start(index[str(prov.address)], PRICE, extra=("--trust", val.address))
    if validator_daemon:
        daemons.start(index[str(val.address)], FEE)
    wait_until(lambda: market.trusts(prov.address, val.address), 60, "the provider to trust its validator")


def _silent_worker(market, who, price: int) -> None:
    """A registered worker with no daemon behind it."""
    if not market.worker(who.address).registered:
        market.register(KeyPair.generate().public_bytes, price, sender=who)


def test_lifecycle__honest_provider_and_validator__completed_released_rated_and_withdrawn(
    daemons, session_factory, e2e_market, accounts, tmp_path, chain
):
    prov, val = accounts[1], accounts[2]
    _pair(daemons, e2e_market, prov, val)
    balance_before = prov.balance
    s = session_factory()
    tid = s.post(provider=prov.address, validator="auto", price=PRICE, validator_fee=FEE, timeout=600)
    assert s.data["validator"] == val.address  # the best validator THAT provider trusts

    assert s.wait_for("Completed", timeout=240) == "Completed"
    out = s.fetch_result(tmp_path / "result")
    assert any(out.iterdir()) and s.data["result_from"] in ("validator", "provider")
    assert _accuracy(s.data["metrics"]) > 0.8
    s.rate(5, 4)

    assert task_status(e2e_market, tid) == Status.Rated
    worker = e2e_market.worker(prov.address)
    assert worker.provider_record.count >= 1 and e2e_market.worker(val.address).validator_record.count >= 1
    # The provider daemon withdraws its pay (and its collateral back); the validator its fee.
    wait_until(lambda: _credit(e2e_market, prov) == 0 and prov.balance > balance_before, 60, "provider withdrawal")
    wait_until(lambda: _credit(e2e_market, val) == 0, 60, "validator withdrawal")
    # SIGTERM: both daemons finish their pass, stop hosting and exit 0.
    assert [proc.stop() for proc in daemons.procs] == [0, 0]
    # Each daemon's journal names every transaction it sent, by its hash on chain.
    web3 = chain.provider.web3
    for proc, who in zip(daemons.procs, (prov, val)):
        state = DaemonState(proc.state_dir / who.address.lower() / f"daemon-{chain.chain_id}.sqlite")
        journal = state.journal_all()
        state.close()
        assert journal and all(e["status"] == "mined" and e["tx_hash"] for e in journal), journal
        assert {web3.eth.get_transaction(e["tx_hash"])["from"] for e in journal} == {who.address}


def test_lifecycle__script_raises__failed_within_seconds_with_its_error_line(
    daemons, session_factory, e2e_market, accounts, requester, tmp_path
):
    prov, val = accounts[3], accounts[4]
    _pair(daemons, e2e_market, prov, val, validator_daemon=False)
    _silent_worker(e2e_market, val, FEE)
    s = session_factory(raising_task(tmp_path))
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)
    posted = time.time()

    assert s.wait_for("Failed", timeout=120) == "Failed"
    # Not at its timeout (600 s): the provider reported the crash as soon as the run ended.
    assert time.time() - posted < 90
    failure = s.failure()
    assert (failure["stage"], failure["exit_code"]) == ("execute", 1)
    assert failure["error_line"].startswith("ValueError: boom")
    assert "\x1b" not in failure["stderr_tail"] + failure["error_line"] and "\\x1b" in failure["stderr_tail"]
    # The provider kept its failure fee (10% of the price, less the burn); the rest and the fee came back.
    assert _credit(e2e_market, requester) == credit_before + PRICE - PRICE // 10 + FEE
    with pytest.raises(RequestError):
        s.fetch_result()
    s.rate(2)
    assert task_status(e2e_market, tid) == Status.Rated


def test_lifecycle__overclaimed_result__provider_pre_check_fails_it_requester_refunded(
    daemons, session_factory, e2e_market, accounts, requester, overclaim_task
):
    """The task's own validate mode rejects what it executed (1d): the provider finds out with its pre-check and
    reports the failure at once, instead of handing an honest validator a reject to rule."""
    prov, val = accounts[1], accounts[2]
    _pair(daemons, e2e_market, prov, val)
    s = session_factory(overclaim_task)
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)

    assert s.wait_for("Completed", "Failed", "Rejected", timeout=240) == "Failed"
    assert s.failure()["stage"] == "validate"
    assert _credit(e2e_market, requester) == credit_before + PRICE - PRICE // 10 + FEE
    assert e2e_market.result_of(tid) is None  # nothing was ever committed, nothing released


def test_lifecycle__validator_rejects__dispute_refunds_requester_and_no_result_released(
    daemons, session_factory, e2e_market, accounts, requester
):
    """A real provider commits its result; the validator it trusts (played here) rejects: the requester gets
    price + fee back and never holds the result; the provider's collateral paid the validator."""
    prov, val = accounts[5], accounts[6]
    _silent_worker(e2e_market, val, FEE)
    _pair(daemons, e2e_market, prov, val, validator_daemon=False)
    s = session_factory()
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)
    assert s.wait_for("Validating", timeout=240) == "Validating"
    result = e2e_market.result_of(tid)
    e2e_market.submit_verdict(tid, result, False, sender=val)

    assert s.wait_for("Rejected", timeout=30) == "Rejected"
    assert s.data["accepted"] is False and s.data["settled"]["refund"] == PRICE + FEE
    assert _credit(e2e_market, requester) == credit_before + PRICE + FEE
    assert _credit(e2e_market, val) == FEE - FEE // 100  # the judge paid out of the collateral, less the burn
    with pytest.raises(RequestError, match="has no result yet"):
        s.fetch_result()


def test_lifecycle__silent_provider__requester_refunded_after_deadline(
    session_factory, e2e_market, accounts, requester, chain
):
    silent, val = accounts[7], accounts[8]
    _silent_worker(e2e_market, silent, PRICE)
    _silent_worker(e2e_market, val, FEE)
    if not e2e_market.trusts(silent.address, val.address):
        e2e_market.set_trust(val.address, True, sender=silent)
    s = session_factory()
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=silent.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=MIN_TIMEOUT)
    assert task_status(e2e_market, tid) == Status.Executing

    move_time(chain, MIN_TIMEOUT + 5)
    assert s.refund() == "expired"

    assert task_status(e2e_market, tid) == Status.Expired
    assert _credit(e2e_market, requester) == credit_before + PRICE + FEE
    assert _credit(e2e_market, silent) == 0


def test_lifecycle__silent_validator__requester_refunded_and_the_miss_on_its_record(
    daemons, session_factory, e2e_market, accounts, requester, chain
):
    prov, silent = accounts[3], accounts[8]
    _silent_worker(e2e_market, silent, FEE)
    _pair(daemons, e2e_market, prov, silent, validator_daemon=False)
    missed = e2e_market.worker(silent.address).missed
    s = session_factory()
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=prov.address, validator=silent.address, price=PRICE, validator_fee=FEE, timeout=600)
    assert s.wait_for("Validating", timeout=240) == "Validating"

    move_time(chain, VALIDATION_WINDOW + 5)
    assert s.refund() == "expired"
    assert task_status(e2e_market, tid) == Status.Expired
    assert _credit(e2e_market, requester) == credit_before + PRICE + FEE
    assert e2e_market.worker(silent.address).missed == missed + 1


def test_submit__bad_task_folder__one_line_error_and_no_deposit(tmp_path, node_uri, market_address, requester):
    bad = tmp_path / "not-a-task"
    bad.mkdir()
    (bad / "readme.txt").write_text("no entry script, no manifest")
    nonce_before = requester.nonce
    proc = subprocess.run(
        [APE, "ichain", "submit", str(bad), "--network", node_uri, "--account", "TEST::0", "--market",
         market_address, "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert requester.nonce == nonce_before  # no transaction, no deposit


def test_submit_cli__silent_provider__refunds_itself_after_the_deadline(
    tmp_path, node_uri, market_address, e2e_market, accounts, requester
):
    silent, val = accounts[7], accounts[8]
    _silent_worker(e2e_market, silent, PRICE)
    _silent_worker(e2e_market, val, FEE)
    if not e2e_market.trusts(silent.address, val.address):
        e2e_market.set_trust(val.address, True, sender=silent)
    credit_before = _credit(e2e_market, requester)
    proc = subprocess.run(
        [APE, "ichain", "submit", str(DIGITS), "--network", node_uri, "--account", "TEST::0", "--market",
         market_address, "--state-dir", str(tmp_path / "state"), "--provider", silent.address, "--validator",
         val.address, "--price", str(PRICE), "--validator-fee", str(FEE), "--timeout", str(MIN_TIMEOUT),
         "--wait-timeout", "180"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "missed its deadline" in proc.stdout and "ended Expired" in proc.stdout, proc.stdout[-2000:]
    assert _credit(e2e_market, requester) == credit_before + PRICE + FEE


def test_submit_cli__script_raises__prints_the_error_line_within_seconds_and_asks_no_rating(
    daemons, tmp_path, node_uri, market_address, e2e_market, accounts
):
    prov, val = accounts[5], accounts[6]
    _silent_worker(e2e_market, val, FEE)
    _pair(daemons, e2e_market, prov, val, validator_daemon=False)
    started = time.time()
    proc = subprocess.run(
        [APE, "ichain", "submit", str(raising_task(tmp_path)), "--network", node_uri, "--account", "TEST::0",
         "--market", market_address, "--state-dir", str(tmp_path / "state"), "--provider", prov.address,
         "--validator", val.address, "--timeout", "600", "--wait-timeout", "180"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    took = time.time() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "FAILED at the provider" in out and "stage execute, exit code 1" in out, out[-2000:]
    assert "error: ValueError: boom" in out, out[-2000:]
    assert "\x1b" not in out + proc.stderr and "\u202e" not in out  # neutralised: shown as \x1b, never sent
    assert "not rated" in out  # no default rating
    assert took < 150, took  # the task's 600 s timeout never came into it
