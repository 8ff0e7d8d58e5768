"""The provider daemon's decisions on the session's anvil (real node, real SDK, real SQLite; no sandbox runs)."""

from __future__ import annotations

import hashlib
import time

import pytest

from ichain.config import load_config
from ichain.daemon.provider import ProviderDaemon
from ichain.daemon.state import DaemonState
from ichain.market import Status
from ichain.transfer import KeyPair


def _h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(scope="module")
def daemon_market(accounts):
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    d = deploy(accounts[9], review_window=30, validation_window=60, min_timeout=30, max_timeout=3600, save=False)
    market = get_market(d.market)
    for idx in (3, 4):
        market.register(KeyPair.generate().public_bytes, 10**15, sender=accounts[idx])
    return market


@pytest.fixture
def config(tmp_path):
    return load_config(transport="direct", state_dir=tmp_path / "state", host="127.0.0.1")


def _updates(state: DaemonState) -> list[dict]:
    return [e for e in state.journal_all() if e["action"].startswith("update:")]


def test_start__restarted_after_journaling_an_update__resends_it_with_the_journaled_nonce(
    daemon_market, config, accounts
):
    acct = accounts[6]
    old_key = KeyPair.generate().public_bytes
    daemon_market.register(old_key, 10**15, sender=acct)
    first = ProviderDaemon(daemon_market, acct, config, price=2 * 10**15, ws_uri="")
    first.start()
    [update] = _updates(first.state)
    first.shutdown()
    # A later life of the daemon journaled the same update and died before sending it, while the worker is back
    # on its old settings: the restart must find that entry and replace by its nonce, not send a second update.
    daemon_market.update(old_key, 10**15, sender=acct)
    nonce = acct.nonce
    state = DaemonState(first.state.path)
    state.journal_intent(update["action"], nonce)
    state.close()
    time.sleep(1.1)  # the restart comes in a later second than the first life: the key must not depend on when

    again = ProviderDaemon(daemon_market, acct, config, price=2 * 10**15, ws_uri="")
    again.start()
    try:
        assert [(e["action"], e["status"], e["nonce"]) for e in _updates(again.state)] == [
            (update["action"], "mined", nonce)
        ]
        worker = daemon_market.worker(acct.address)
        assert (worker.price, worker.enc_key) == (2 * 10**15, again.keypair.public_bytes)
    finally:
        again.shutdown()


def _validating(market, accounts, result: bytes) -> int:
    prov, val = accounts[3], accounts[4]
    task = market.post(_h(f"task {time.time()}"), price=10**15, validator_fee=10**14, provider=prov.address,
                       validator=val.address, provider_locator=b"p", validator_locator=b"v", timeout=600,
                       sender=accounts[0])
    market.submit_result(task.task_id, result, b"r", b"v", sender=prov)
    assert market.task(task.task_id).status == Status.Validating
    return task.task_id


def test_validator_job__recorded_result_is_not_the_commitment__waits_and_sends_no_verdict(
    daemon_market, config, accounts
):
    committed = _h("the result on chain")
    tid = _validating(daemon_market, accounts, committed)
    daemon = ProviderDaemon(daemon_market, accounts[4], config, ws_uri="")
    # What an event that a reorg replaced left behind: another result, and the verdict reached on it.
    daemon.state.upsert_task(tid, "validator", locator="00", result_locator="00",
                             result_hash=_h("a replaced result").hex(), accepted=True, reason="validate exit 0")
    try:
        started = time.time()
        daemon._validator_job(daemon.state.task(tid, "validator"))
        assert daemon_market.task(tid).status == Status.Validating
        assert daemon.state.journal(f"verdict:{tid}") is None
        # Checked again later (when the event comes), not dropped: a check is scheduled after the job began.
        assert daemon.next_check[(tid, "validator")] > started
    finally:
        daemon.shutdown()


def test_validator_job__verdict_reached_on_the_commitment__sent_naming_the_onchain_result(
    daemon_market, config, accounts
):
    committed = _h("judged result")
    tid = _validating(daemon_market, accounts, committed)
    daemon = ProviderDaemon(daemon_market, accounts[4], config, ws_uri="")
    # A restart between judging and sending: the verdict on this commitment is kept.
    daemon.state.upsert_task(tid, "validator", locator="00", result_locator="00", result_hash=committed.hex(),
                             judged=committed.hex(), accepted=True, reason="validate exit 0")
    try:
        daemon._validator_job(daemon.state.task(tid, "validator"))
        assert daemon_market.task(tid).status == Status.Accepted
        assert daemon.state.journal(f"verdict:{tid}")["status"] == "mined"
        assert daemon.state.task(tid, "validator").stage == "done"
    finally:
        daemon.shutdown()
