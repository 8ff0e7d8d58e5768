"""Real provider daemons (``ape ichain provide`` subprocesses, the Docker sandbox) on protocol v2's off-chain paths,
and SIGKILLed at every named point of their work.

- A script that raises in execute mode ends the task Failed within seconds, its error sealed to the requester.
- 1d: a validate mode that rejects the provider's own result ends the task Failed through the provider's pre-check;
  the validator never works on it.
- 1c: the requester stops hosting once the provider fetched the task: the validator validates from the provider,
  accepts, the provider is paid, the requester gets the result.
- Fault injection: every point in :data:`ichain.daemon.faults.POINTS` fires once (the daemon logs it, then kills
  itself), a supervisor restarts it. Four tasks go through: two accepted, one whose script raises, one whose
  validator stays silent (the provider expires it for its collateral). Afterwards: every task is settled, no
  transaction went twice and none reverted, and once everyone withdrew the market holds only the burned wei.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from daemon_helpers import OK_TASK, RAISING_TASK, REJECTING_TASK, Requester, task_folder
from ichain._cli._common import get_market
from ichain.config import load_config
from ichain.daemon import faults
from ichain.daemon.state import DaemonState, state_file
from ichain.deployments import deploy
from ichain.market import Status
from ichain.transfer import KeyPair
from ichain.transfer.envelope import Envelope

from marketplace_helpers import MAX_TIMEOUT, MIN_TIMEOUT, VALIDATION_WINDOW, move_time, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

PRICE, FEE = 10**16, 2 * 10**15


@pytest.fixture
def fresh_market(accounts):
    deployed = deploy(accounts[9], validation_window=VALIDATION_WINDOW, min_timeout=MIN_TIMEOUT,
                      max_timeout=MAX_TIMEOUT, save=False)
    return get_market(deployed.market), deployed


@pytest.fixture
def requester(fresh_market, accounts, chain, tmp_path):
    market, _ = fresh_market
    r = Requester(market, accounts[0], tmp_path / "requester", int(chain.chain_id)).start()
    yield r
    r.stop()


def _provider_txs(chain, address: str, start: int) -> list[tuple[str, int | None, int]]:
    """(selector, first uint argument or None, receipt status) of every tx the address sent since ``start``."""
    web3 = chain.provider.web3
    out = []
    for n in range(start, web3.eth.block_number + 1):
        for tx in web3.eth.get_block(n, full_transactions=True)["transactions"]:
            if str(tx["from"]).lower() != address.lower():
                continue
            data = bytes(tx["input"])
            arg = int.from_bytes(data[4:36], "big") if len(data) >= 36 else None
            status = web3.eth.get_transaction_receipt(tx["hash"])["status"]
            out.append((data[:4].hex(), arg, status))
    return out


def _daemon_record(proc, address: str, chain_id: int, task_id: int, role: str):
    state = DaemonState(state_file(proc.state_dir / address.lower(), chain_id))
    try:
        return state.task(task_id, role), state.journal_all()
    finally:
        state.close()


# ------------------------------------------------------------------------------------------ off-chain paths
def test_daemon__script_raises_in_execute__task_failed_within_30s_with_its_error_sealed_to_the_requester(
    daemons, fresh_market, requester, accounts, tmp_path
):
    market, deployed = fresh_market
    provider, validator = accounts[8], accounts[2]
    market.register(KeyPair.generate().public_bytes, FEE, sender=validator)
    proc = daemons.start(8, PRICE, market=deployed.market, extra=("--trust", validator.address))
    tid = requester.post(task_folder(tmp_path, "raises", RAISING_TASK), provider=provider.address,
                         validator=validator.address, price=PRICE, fee=FEE, timeout=600)
    posted = time.time()
    wait_until(lambda: task_status(market, tid) == Status.Failed, 60, "the task to fail", interval=0.2)
    # Not at its timeout (600 s): within seconds of the run, fetch and container start included.
    assert time.time() - posted < 30

    report = requester.failure(tid)
    assert (report.stage, report.exit_code) == ("execute", 1)
    assert report.error_line == "ValueError: boom: the script failed on purpose"
    assert "loading the data" not in report.stderr_tail  # stdout is not stderr
    failed = requester.event(tid, "TaskFailed")
    assert failed.provider_paid == PRICE // 10 * 99 // 100  # the failure fee, less the burn
    assert failed.refund == PRICE + FEE - PRICE // 10
    assert market.result_of(tid) is None  # nothing was committed
    assert proc.log_path.read_text().count("running in the sandbox") == 1  # reported at once, never re-run


def test_daemon__validate_mode_rejects_its_own_result__failed_by_the_precheck_and_no_validator_work(
    daemons, fresh_market, requester, accounts, tmp_path, chain
):
    """1d: a requester's validate mode that rejects everything cannot turn an honest validator against the
    provider: the provider's pre-check ends the task with the failure fee, before any commitment."""
    market, deployed = fresh_market
    provider, validator = accounts[8], accounts[2]
    vproc = daemons.start(2, FEE, market=deployed.market)
    proc = daemons.start(8, PRICE, market=deployed.market, extra=("--trust", validator.address))
    tid = requester.post(task_folder(tmp_path, "rigged", REJECTING_TASK), provider=provider.address,
                         validator=validator.address, price=PRICE, fee=FEE, timeout=600)
    wait_until(lambda: task_status(market, tid) == Status.Failed, 90, "the pre-check to fail the task", interval=0.2)

    report = requester.failure(tid)
    assert (report.stage, report.exit_code) == ("validate", 3)
    assert "claim_offset says no" in report.stderr_tail
    assert requester.event(tid, "ResultSubmitted") is None and market.result_of(tid) is None
    assert requester.event(tid, "VerdictSubmitted") is None
    assert proc.log_path.read_text().count("running in the sandbox") == 1
    # The validator's daemon saw the task and settled it as Failed without fetching or judging anything.
    def validator_settled() -> bool:
        record, _ = _daemon_record(vproc, validator.address, int(chain.chain_id), tid, "validator")
        return record is not None and record.stage == "done"

    wait_until(validator_settled, 30, "the validator to settle")
    record, journal = _daemon_record(vproc, validator.address, int(chain.chain_id), tid, "validator")
    assert record.data.get("final_status") == "Failed" and "judged" not in record.data
    assert not any(e["action"].startswith("verdict:") for e in journal)


def test_daemon__requester_stops_hosting_after_the_fetch__validated_from_the_provider_and_the_provider_paid(
    daemons, fresh_market, requester, accounts, tmp_path
):
    """1c: the validator never depends on the requester: it fetches task and result from the provider."""
    market, deployed = fresh_market
    provider, validator = accounts[8], accounts[2]
    daemons.start(2, FEE, market=deployed.market)
    daemons.start(8, PRICE, market=deployed.market, extra=("--trust", validator.address))
    tid = requester.post(task_folder(tmp_path, "ok", OK_TASK), provider=provider.address,
                         validator=validator.address, price=PRICE, fee=FEE, timeout=600)
    wait_until(lambda: requester.fetched(tid), 60, "the provider to fetch the task", interval=0.1)
    requester.stop()  # the requester's host is gone for good
    wait_until(lambda: task_status(market, tid) == Status.Completed, 120, "the accept", interval=0.2)

    verdict = requester.event(tid, "VerdictSubmitted")
    collateral = market.collateral_for(PRICE, FEE)
    assert verdict.accepted
    assert verdict.provider_paid == PRICE * 99 // 100 + collateral
    assert verdict.validator_paid == FEE * 99 // 100
    # The result reaches the requester only now, from the validator's verified copy.
    got = requester.result(tid, tmp_path / "result.tar")
    assert got.stat().st_size > 0
    # Before the accept nothing on chain opened for the requester: the provider's envelope holds the bundle
    # sealed to the validator only, and the accept released exactly one copy, the validator's.
    assert requester.opens_before_accept(tid) == []
    assert len(Envelope.decode(bytes(verdict.requester_locator)).sealed) == 1
    wait_until(lambda: market.credit(provider.address) == 0, 30, "the provider's withdrawal")


# ------------------------------------------------------------------------------------------ crash points
def test_provider_daemon__sigkilled_at_every_point__tasks_settle_without_duplicates_or_stuck_wei(
    daemons, fresh_market, accounts, requester, chain, tmp_path
):
    market, deployed = fresh_market
    provider, validator, silent = accounts[8], accounts[2], accounts[5]
    market.register(KeyPair.generate().public_bytes, FEE, sender=silent)  # a validator that never answers
    kill_log = tmp_path / "kills.log"
    env = {"ICHAIN_KILL_AT": ",".join(faults.POINTS), "ICHAIN_KILL_LOG": str(kill_log)}
    daemons.start(2, FEE, market=deployed.market)
    state_dir = tmp_path / "faulty"
    trust = ("--trust", validator.address, "--trust", silent.address)
    proc = daemons.start(8, PRICE, env=env, state=state_dir, market=deployed.market, wait=False, extra=trust)
    restarts = 0
    stop = threading.Event()
    crashes: list[str] = []

    def supervise() -> None:
        """Restart the daemon whenever it died of one of our kills (in the background)."""
        nonlocal proc, restarts
        while not stop.is_set():
            if not proc.alive():
                if proc.proc.returncode != -signal.SIGKILL:
                    crashes.append(proc.tail(10))  # a real crash, not an injected kill
                    return
                proc.stop()
                restarts += 1
                proc = daemons.start(8, PRICE, env=env, state=state_dir, market=deployed.market, wait=False,
                                     extra=trust)
            time.sleep(0.2)

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()

    def check() -> None:
        assert not crashes, crashes[0]

    wait_until(lambda: market.worker(provider.address).registered
               and market.trusts(provider.address, validator.address)
               and market.trusts(provider.address, silent.address), 180, "the provider to register and trust",
               check=check)
    ok = task_folder(tmp_path, "ok", OK_TASK)
    ids: list[int] = []
    try:
        for i, (folder, judge) in enumerate([(ok, validator), (ok, validator),
                                             (task_folder(tmp_path, "raises", RAISING_TASK), validator),
                                             (ok, silent)]):
            ids.append(requester.post(folder, provider=provider.address, validator=judge.address, price=PRICE,
                                      fee=FEE, timeout=MAX_TIMEOUT))
        for tid in ids[:2]:
            wait_until(lambda tid=tid: task_status(market, tid) == Status.Completed, 300, f"task {tid} accepted",
                       interval=0.5, check=check)
        wait_until(lambda: task_status(market, ids[2]) == Status.Failed, 300, "the failure report", interval=0.5,
                   check=check)
        # The silent validator lets its window pass: the provider expires the task and takes its collateral back.
        wait_until(lambda: task_status(market, ids[3]) == Status.Validating, 300, "the fourth result", interval=0.5,
                   check=check)
        move_time(chain, VALIDATION_WINDOW + 5)
        wait_until(lambda: task_status(market, ids[3]) == Status.Expired, 300, "the provider's expire",
                   interval=0.5, check=check)
        wait_until(lambda: int(market.credit(provider.address)) == 0, 120, "the provider's withdrawal",
                   interval=0.5, check=check)
        # Let the daemon reach the remaining points (done) before judging.
        wait_until(lambda: kill_log.exists() and len(set(kill_log.read_text().split())) >= len(faults.POINTS), 180,
                   "every kill point", interval=0.5, check=check)
        fired = kill_log.read_text().split()
    finally:
        stop.set()
        supervisor.join(10)

    assert len(set(fired)) == len(faults.POINTS) and restarts >= len(faults.POINTS) - 1, (fired, restarts)
    assert [task_status(market, i) for i in ids] == [Status.Completed, Status.Completed, Status.Failed,
                                                      Status.Expired]
    txs = _provider_txs(chain, provider.address, deployed.block)
    assert all(status == 1 for _, _, status in txs), txs  # nothing reverted
    per_action = Counter((sel, arg) for sel, arg, _ in txs if arg is not None)
    assert per_action and max(per_action.values()) == 1, per_action  # no action sent twice
    # Everyone takes what is theirs: the market is left with the burned wei only.
    for who in (requester.account, validator, silent):
        if int(market.credit(who.address)) > 0:
            market.withdraw(sender=who)
    wait_until(lambda: chain.provider.get_balance(deployed.market) == market.burned(), 60,
               "the market to hold only the burned wei", check=check)
