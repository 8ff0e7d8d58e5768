"""The marketplace end to end: real anvil, provider daemons as subprocesses, Docker sandbox, direct
transfer. Each test follows one task from a folder on disk to its settlement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ichain.daemon.state import DaemonState
from ichain.market import Status
from ichain.requester import RequesterSession
from ichain.transfer import KeyPair

from marketplace_helpers import DIGITS, MIN_TIMEOUT, REVIEW_WINDOW, move_time, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(420)]

PRICE = 10**16
FEE = 2 * 10**15


def _accuracy(metrics: dict) -> float:
    return float(next(v for k, v in metrics.items() if "acc" in k.lower()))


def _credit(market, who) -> int:
    return int(market.credit(who.address))


def _rating_count(market, who) -> int:
    return market.worker(who.address).rating_count


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


def test_lifecycle__honest_provider_and_validator__accepted_paid_withdrawn_and_rated(
    daemons, session_factory, e2e_market, accounts, tmp_path, chain
):
    prov, val = accounts[1], accounts[2]
    daemons.start(1, PRICE)
    daemons.start(2, FEE)
    ratings_before = _rating_count(e2e_market, prov)
    balance_before = prov.balance
    s = session_factory()
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)

    assert s.wait_for("Accepted", "Rejected", timeout=240) == "Accepted"
    out = s.fetch_result(tmp_path / "result")
    assert any(out.iterdir())
    assert _accuracy(s.data["metrics"]) > 0.8
    s.finalize(5)

    assert task_status(e2e_market, tid) == Status.Completed
    assert _rating_count(e2e_market, prov) == ratings_before + 1
    # The provider daemon withdraws its pay; the validator its fee.
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


def test_lifecycle__validator_named_after_result__requester_rehosts_and_task_accepted(
    daemons, session_factory, e2e_market, accounts, tmp_path
):
    prov, val = accounts[3], accounts[4]
    daemons.start(3, PRICE)
    daemons.start(4, FEE)
    s = session_factory()
    tid = s.post(provider=prov.address, validator=None, price=PRICE, validator_fee=FEE, timeout=600)
    assert s.wait_for("AwaitingValidator", timeout=240) == "AwaitingValidator"
    assert s.choose_validator(val.address) == val.address
    assert s.wait_for("Accepted", "Rejected", timeout=180) == "Accepted"
    s.fetch_result(tmp_path / "result")
    s.finalize(4)
    assert task_status(e2e_market, tid) == Status.Completed


def test_lifecycle__overclaimed_result__validator_rejects_provider_unpaid_requester_refunded(
    daemons, session_factory, e2e_market, accounts, requester, tmp_path, overclaim_task
):
    prov, val = accounts[1], accounts[2]
    daemons.start(1, PRICE)
    daemons.start(2, FEE)
    s = session_factory(overclaim_task)  # claims 3 points more accuracy than it has
    credit_before = _credit(e2e_market, requester)
    prov_balance = prov.balance
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)

    assert s.wait_for("Accepted", "Rejected", timeout=240) == "Rejected"
    assert _credit(e2e_market, requester) == credit_before + PRICE  # the price comes back; the fee paid the work
    s.fetch_result(tmp_path / "result")  # the requester still gets (and can inspect) what was delivered
    s.finalize(1)
    assert task_status(e2e_market, tid) == Status.Closed
    wait_until(lambda: _credit(e2e_market, val) == 0, 60, "validator withdrawal")
    assert _credit(e2e_market, prov) == 0
    assert prov.balance <= prov_balance  # unpaid (it only spent gas)


def test_lifecycle__silent_provider__requester_refunded_after_deadline(
    session_factory, e2e_market, accounts, requester, chain
):
    silent = accounts[5]
    if not e2e_market.worker(silent.address).registered:
        e2e_market.register(KeyPair.generate().public_bytes, PRICE, sender=silent)
    s = session_factory()
    credit_before = _credit(e2e_market, requester)
    tid = s.post(provider=silent.address, validator=None, price=PRICE, validator_fee=FEE, timeout=MIN_TIMEOUT)
    assert task_status(e2e_market, tid) == Status.Executing

    move_time(chain, MIN_TIMEOUT + 5)
    assert s.refund() == "expired"

    assert task_status(e2e_market, tid) == Status.Expired
    assert _credit(e2e_market, requester) == credit_before + PRICE + FEE
    assert _credit(e2e_market, silent) == 0


def test_lifecycle__silent_requester__provider_paid_after_review_window(
    daemons, session_factory, e2e_market, accounts, chain, requester
):
    prov, val = accounts[6], accounts[7]
    daemons.start(6, PRICE)
    daemons.start(7, FEE)
    s = session_factory()
    tid = s.post(provider=prov.address, validator=val.address, price=PRICE, validator_fee=FEE, timeout=600)
    assert s.wait_for("Accepted", "Rejected", timeout=240) == "Accepted"
    balance_before = prov.balance

    # The requester never finalizes: once the review window is over, the provider's daemon claims.
    move_time(chain, REVIEW_WINDOW + 5)
    wait_until(lambda: task_status(e2e_market, tid) == Status.Expired, 60, "the provider daemon to expire the task")
    wait_until(lambda: _credit(e2e_market, prov) == 0 and prov.balance > balance_before, 60,
               "the provider daemon to withdraw its pay")


def test_submit__bad_task_folder__one_line_error_and_no_deposit(tmp_path, node_uri, market_address, requester):
    bad = tmp_path / "not-a-task"
    bad.mkdir()
    (bad / "readme.txt").write_text("no entry script, no manifest")
    nonce_before = requester.nonce
    ape = str(Path(sys.executable).with_name("ape"))
    proc = subprocess.run(
        [ape, "ichain", "submit", str(bad), "--network", node_uri, "--account", "TEST::0", "--market",
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
    silent = accounts[5]
    if not e2e_market.worker(silent.address).registered:
        e2e_market.register(KeyPair.generate().public_bytes, PRICE, sender=silent)
    credit_before = _credit(e2e_market, requester)
    ape = str(Path(sys.executable).with_name("ape"))
    proc = subprocess.run(
        [ape, "ichain", "submit", str(DIGITS), "--network", node_uri, "--account", "TEST::0", "--market",
         market_address, "--state-dir", str(tmp_path / "state"), "--provider", silent.address, "--validator",
         "later", "--price", str(PRICE), "--validator-fee", "0", "--timeout", str(MIN_TIMEOUT),
         "--wait-timeout", "180"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "missed its deadline" in proc.stdout and "ended Expired" in proc.stdout, proc.stdout[-2000:]
    assert _credit(e2e_market, requester) == credit_before + PRICE


def test_post__another_post_takes_the_expected_id__provider_still_opens_the_task(
    daemons, session_factory, e2e_market, accounts, monkeypatch
):
    prov = accounts[3]
    daemons.start(3, PRICE)
    racer, mine = session_factory(), session_factory()
    stale = int(e2e_market.last_task_id())  # what `mine` read before the other post landed
    other = racer.post(provider=None, validator=None, price=PRICE, validator_fee=0, timeout=600)
    monkeypatch.setattr(e2e_market, "last_task_id", lambda: stale)  # replay that stale read
    tid = mine.post(provider=prov.address, validator=None, price=PRICE, validator_fee=0, timeout=600)
    monkeypatch.undo()
    assert (other, tid) == (stale + 1, stale + 2)
    assert mine.wait_for("AwaitingValidator", timeout=240) == "AwaitingValidator"
    racer.refund()  # cancel the pending one
    assert task_status(e2e_market, other) == Status.Cancelled
