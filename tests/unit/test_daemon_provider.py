"""The provider daemon's decisions on the session's anvil (real node, real SDK, real SQLite, real chunk hosts).

The paths here end before any sandbox run (a refusal, a reject for a missing result, a fee below policy), so they
need no Docker engine: each drives a real :class:`ProviderDaemon` (its runner, handlers, thread pool, host and
journal) pass by pass, with a requester and, where the test plays a cheating provider, a provider made of the SDK
and a chunk host.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import pytest

from ichain.config import load_config
from ichain.daemon.provider import ProviderDaemon
from ichain.daemon.state import DaemonState
from ichain.market import Status, TaskDeclined
from ichain.sandbox import pack_task
from ichain.transfer import ChunkHost, DirectTransport, KeyPair, TransferContext
from ichain.transfer.envelope import Envelope

PRICE, FEE = 10**16, 10**15
ASKING = 10**15


def _h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
def daemon_market(accounts):
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    d = deploy(accounts[9], validation_window=60, min_timeout=30, max_timeout=3600, save=False)
    return get_market(d.market)


@pytest.fixture
def config(tmp_path):
    return load_config(transport="direct", state_dir=tmp_path / "state", host="127.0.0.1")


@pytest.fixture
def host(tmp_path):
    """A requester's (or a test provider's) chunk host."""
    h = ChunkHost(tmp_path / "req-host", transport=DirectTransport())
    h.start()
    yield h
    h.stop()


@pytest.fixture
def started(daemon_market, config, tmp_path):
    """Factory: a started daemon for an account (stopped at the end)."""
    made: list[ProviderDaemon] = []

    def start(acct, price: int = ASKING, **settings) -> ProviderDaemon:
        cfg = config.replace(state_dir=tmp_path / f"state-{acct.address[-6:]}", **settings)
        daemon = ProviderDaemon(daemon_market, acct, cfg, price=price, ws_uri="")
        daemon.start()
        made.append(daemon)
        return daemon

    yield start
    for d in made:
        d.shutdown()


def _pump(daemon: ProviderDaemon, until: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Run the daemon's passes (ingest, schedule, jobs) until ``until()`` holds; a job's error fails the test."""
    assert daemon.runner is not None
    end = time.time() + timeout
    while True:
        daemon.runner.poll_once()
        daemon.schedule()
        futures = list(daemon.jobs.values())
        concurrent.futures.wait(futures, timeout=30)
        for fut in futures:
            if fut.done() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]
        if until():
            return
        if time.time() > end:
            pytest.fail(f"timed out waiting for {what or until}")
        time.sleep(0.1)


def _move_time(chain, seconds: int) -> None:
    chain.provider.make_request("evm_increaseTime", [int(seconds)])
    chain.provider.make_request("evm_mine", [])


def _task_folder(tmp_path: Path, name: str, manifest: dict | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "task.py").write_text("import sys\nopen('out.txt', 'w').write('ok')\n")
    if manifest:
        (folder / "ichain.json").write_text(json.dumps(manifest))
    return folder


def _post(market, chain, requester, folder: Path, host: ChunkHost, *, provider: str, validator: str, timeout: int = 600,
          keypair: KeyPair | None = None, price: int = PRICE, fee: int = FEE) -> tuple[int, bytes]:
    """Post a task as a requester does: pack it, host it for the provider only, seal under task id 0 with the
    requester's address and key bound in. Returns (task id, the task locator)."""
    keypair = keypair or KeyPair.generate()
    archive = folder.with_suffix(".tar")
    task_hash = pack_task(folder, archive)
    ctx = TransferContext(int(chain.chain_id), market.address, 0, "task-provider", requester.address,
                          keypair.public_bytes)
    sealed = host.offer(archive, market.worker(provider).enc_key, ctx)
    locator = Envelope(keypair.public_bytes, (sealed,)).encode()
    task = market.post(task_hash, validator=validator, price=price, validator_fee=fee, timeout=timeout,
                       provider=provider, locator=locator, sender=requester)
    return task.task_id, locator


def _register(market, acct, price: int = ASKING) -> KeyPair:
    keypair = KeyPair.generate()
    market.register(keypair.public_bytes, price, sender=acct)
    return keypair


def _updates(state: DaemonState) -> list[dict]:
    return [e for e in state.journal_all() if e["action"].startswith("update:")]


# ------------------------------------------------------------------------------------------ start-up
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


def test_start__trusted_validators_configured__trusted_on_chain_once_across_restarts(
    daemon_market, config, accounts, started
):
    validator = accounts[4]
    _register(daemon_market, validator)
    daemon = started(accounts[3], trusted_validators=(validator.address,))
    assert daemon_market.trusts(accounts[3].address, validator.address)
    [entry] = [e for e in daemon.state.journal_all() if e["action"].startswith("trust:")]
    assert entry["status"] == "mined"
    daemon.shutdown()
    again = ProviderDaemon(daemon_market, accounts[3], daemon.config, price=ASKING, ws_uri="")
    again.start()  # already trusted: nothing sent
    try:
        assert [e["action"] for e in again.state.journal_all() if e["action"].startswith("trust:")] == [
            entry["action"]]
    finally:
        again.shutdown()


# ------------------------------------------------------------------------------------------ provider refusals
@pytest.mark.parametrize("swap_key", [True, False], ids=["own-key-swapped-in", "victim-key-kept"])
def test_provider__copied_locator_reposted_by_another_requester__ended_failed_at_its_cost_and_nothing_fetched_or_run(
    daemon_market, chain, accounts, started, host, tmp_path, swap_key
):
    """H3: another requester copies a victim's TaskPosted locator and task hash into its own post."""
    provider, validator, victim, attacker = accounts[3], accounts[4], accounts[0], accounts[1]
    _register(daemon_market, validator)
    daemon = started(provider, trusted_validators=(validator.address,))
    folder = _task_folder(tmp_path, "secret")
    # The victim's task ends before the daemon looks (so the daemon never runs it); its locator stays public.
    victim_id, locator = _post(daemon_market, chain, victim, folder, host, provider=provider.address,
                               validator=validator.address, timeout=30)
    _move_time(chain, 31)
    daemon_market.expire(victim_id, sender=victim)
    env = Envelope.decode(locator)
    copied = Envelope(KeyPair.generate().public_bytes, env.sealed).encode() if swap_key else locator
    [posted] = [e for e in daemon_market.events(0) if e.event_name == "TaskPosted" and e.task_id == victim_id]
    copy = daemon_market.post(posted.task_hash, validator=validator.address, price=PRICE, validator_fee=FEE,
                              timeout=600, provider=provider.address, locator=copied, sender=attacker)

    _pump(daemon, lambda: daemon_market.task(copy.task_id).status == Status.Failed,
          what="the copied task to end with a failure report")
    record = daemon.state.task(copy.task_id, "provider")
    assert record.data["failed_stage"] == "refused" and "does not open for requester" in record.data["error"]
    assert not (daemon.files / f"{copy.task_id}-provider" / "task.tar").exists()
    assert host.progress(host.transfers()[0])["manifest_requests"] == 0  # the victim's task was never fetched
    assert not any(e["action"].startswith("submitResult:") for e in daemon.state.journal_all())
    # The copier paid the failure fee for tying the provider up: 10% of the price, 1% of it burned.
    assert daemon_market.credit(attacker) == PRICE + FEE - PRICE // 10


def test_provider__time_limit_beyond_the_deadline__ended_failed_before_any_run(
    daemon_market, chain, accounts, started, host, tmp_path
):
    """H4: a task asking 24 h per run with 60 s to its deadline would block a slot for a day."""
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    _register(daemon_market, validator)
    daemon = started(provider, trusted_validators=(validator.address,))
    folder = _task_folder(tmp_path, "long", {"time_limit": 86_400})
    tid, _ = _post(daemon_market, chain, requester, folder, host, provider=provider.address,
                   validator=validator.address, timeout=60)

    _pump(daemon, lambda: daemon_market.task(tid).status == Status.Failed, what="the long task to be reported")
    record = daemon.state.task(tid, "provider")
    assert record.data["failed_stage"] == "refused" and "does not fit before its deadline" in record.data["error"]
    work = daemon.files / f"{tid}-provider"
    assert (work / "task.ok").exists() and not (work / "output").exists()  # read, never run
    # The requester pays the failure fee: an impossible task is not a free way to block a provider's slot.
    assert daemon_market.credit(requester) == PRICE + FEE - PRICE // 10


def test_provider__requester_stops_hosting_before_the_fetch__ended_failed_at_its_cost_after_the_grace(
    daemon_market, chain, accounts, started, host, tmp_path
):
    """1c, early variant: the requester stops hosting before the provider fetched its task. Waiting for the
    deadline would tie the provider's slot up for free; after the grace the task ends with a failure report."""
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    _register(daemon_market, validator)
    daemon = started(provider, trusted_validators=(validator.address,), fetch_grace=0)
    tid, _ = _post(daemon_market, chain, requester, _task_folder(tmp_path, "gone"), host, provider=provider.address,
                   validator=validator.address)
    host.stop()

    _pump(daemon, lambda: daemon_market.task(tid).status == Status.Failed, what="the unserved task to be reported")
    record = daemon.state.task(tid, "provider")
    assert record.data["failed_stage"] == "refused" and "could not be fetched" in record.data["error"]
    assert daemon_market.credit(requester) == PRICE + FEE - PRICE // 10


def test_provider__validator_no_longer_trusted__refused_without_fetching(
    daemon_market, chain, accounts, started, host, tmp_path
):
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    _register(daemon_market, validator)
    daemon = started(provider, trusted_validators=(validator.address,))
    tid, _ = _post(daemon_market, chain, requester, _task_folder(tmp_path, "t"), host, provider=provider.address,
                   validator=validator.address)
    daemon_market.set_trust(validator.address, False, sender=provider)  # trust withdrawn after the post
    credit_before = daemon_market.credit(requester)

    _pump(daemon, lambda: daemon.state.task(tid, "provider").stage == "refused", what="the task to be refused")
    assert "not in our trusted set" in daemon.state.task(tid, "provider").data["reason"]
    assert host.progress(host.transfers()[0])["manifest_requests"] == 0
    # Declined on chain at once, with the reason: the requester has the whole deposit back before the deadline.
    task = daemon_market.task(tid)
    assert task.status == Status.Declined and daemon_market.now() < task.deadline
    assert daemon_market.credit(requester) == credit_before + PRICE + FEE
    [declined] = [e for e in daemon_market.task_events(tid) if isinstance(e, TaskDeclined)]
    assert "not in our trusted set" in bytes(declined.reason).decode()


# ------------------------------------------------------------------------------------------ validator paths
def _cheating_provider_result(market, chain, accounts, host, tmp_path, *, serve: bool) -> tuple[int, bytes, KeyPair]:
    """A task submitted by a provider that is the test: it commits a hash with collateral and a validator locator
    whose bundle it then stops serving (``serve=False``: 2d) or serves (a bundle of junk, never fetched here)."""
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    pkeys = _register(market, provider)
    market.set_trust(validator.address, True, sender=provider)
    tid, _ = _post(market, chain, requester, _task_folder(tmp_path, "t"), host, provider=provider.address,
                   validator=validator.address)
    junk = tmp_path / "bundle.tar"
    junk.write_bytes(b"not a bundle")
    ctx = TransferContext(int(chain.chain_id), market.address, tid, "bundle-validator", requester.address,
                          pkeys.public_bytes)
    sealed = host.offer(junk, market.worker(validator.address).enc_key, ctx)
    if not serve:
        host.remove(sealed.transfer_id)
    result_hash = _h(f"a result nobody can see {tid}")
    market.submit_result(tid, result_hash, Envelope(pkeys.public_bytes, (sealed, b"for the requester")).encode(),
                         sender=provider)
    assert market.task(tid).status == Status.Validating
    return tid, result_hash, pkeys


def test_validator__provider_hosts_nothing__rejects_before_its_deadline_and_the_collateral_is_slashed(
    daemon_market, chain, accounts, started, host, tmp_path
):
    """2d: a provider commits a hash and serves nothing; the validator rejects in time instead of going silent."""
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    daemon = started(validator, price=FEE)
    tid, result_hash, _ = _cheating_provider_result(daemon_market, chain, accounts, host, tmp_path, serve=False)
    collateral = daemon_market.collateral_for(PRICE, FEE)
    burned = daemon_market.burned()

    _pump(daemon, lambda: daemon.state.task(tid, "validator") is not None
          and daemon.state.task(tid, "validator").data.get("result_hash") == result_hash.hex(), what="the result")
    assert daemon_market.task(tid).status == Status.Validating  # early on: retried, not rejected at once
    # Close to the validation deadline (inside the daemon's margin), it gives up on the provider and rejects.
    task = daemon_market.task(tid)
    _move_time(chain, task.deadline - daemon_market.now() - int(daemon.config.deadline_margin) + 1)
    _pump(daemon, lambda: daemon_market.task(tid).status == Status.Rejected, what="the reject")

    record = daemon.state.task(tid, "validator")
    assert record.data["accepted"] is False and "result unavailable" in record.data["reason"]
    [verdict] = [e for e in daemon_market.events(0) if e.event_name == "VerdictSubmitted" and e.task_id == tid]
    assert (verdict.accepted, verdict.provider_paid, verdict.requester_locator) == (False, 0, b"")
    assert verdict.validator_paid == FEE * 99 // 100  # the loser pays the judge
    assert daemon_market.burned() - burned == collateral - verdict.validator_paid  # the rest of the collateral
    assert daemon_market.credit(provider.address) == 0
    assert daemon_market.credit(requester.address) >= PRICE + FEE  # refunded in full


def test_validator__fee_below_its_policy__no_fetch_no_compute_no_verdict(
    daemon_market, chain, accounts, started, host, tmp_path
):
    """M5: an assignment below the validator's fee policy is not worked on (the chain already refuses a fee
    below its asking price; the policy floor is the daemon's own)."""
    validator = accounts[4]
    daemon = started(validator, price=FEE, min_validator_fee=FEE + 1)
    tid, _, _ = _cheating_provider_result(daemon_market, chain, accounts, host, tmp_path, serve=True)

    _pump(daemon, lambda: (r := daemon.state.task(tid, "validator")) is not None and r.stage == "refused",
          what="the assignment to be refused")
    assert "below our policy" in daemon.state.task(tid, "validator").data["reason"]
    assert host.progress(host.transfers()[-1])["manifest_requests"] == 0  # the bundle was never fetched
    assert daemon.state.journal(f"verdict:{tid}") is None
    assert daemon_market.task(tid).status == Status.Validating


def test_validator__provider_declines_before_any_result__done_as_declined_and_nothing_sent(
    daemon_market, chain, accounts, started, host, tmp_path
):
    """The task's provider (played here) gives it back: the TaskDeclined event settles the validator's record at
    once (no result will come, no verdict is due), and the validator sends nothing."""
    provider, validator, requester = accounts[3], accounts[4], accounts[0]
    _register(daemon_market, provider)
    daemon_market.set_trust(validator.address, True, sender=provider)
    daemon = started(validator)
    tid, _ = _post(daemon_market, chain, requester, _task_folder(tmp_path, "t"), host, provider=provider.address,
                   validator=validator.address)
    _pump(daemon, lambda: daemon.state.task(tid, "validator") is not None, what="the validator's record")
    nonce = validator.nonce
    daemon_market.decline(tid, "needs runtime ichain-torch; this provider has ichain-runtime", sender=provider)

    _pump(daemon, lambda: True)  # one pass: the event wakes the job at once (its own re-check is 2 s away)
    assert daemon.state.task(tid, "validator").stage == "done"
    assert daemon.state.task(tid, "validator").data["final_status"] == "Declined"
    assert daemon.state.journal(f"verdict:{tid}") is None and validator.nonce == nonce
    assert daemon_market.credit(validator) == 0


def _validating(market, chain, accounts, host, tmp_path) -> int:
    tid, _, _ = _cheating_provider_result(market, chain, accounts, host, tmp_path, serve=True)
    return tid


def test_validator_job__recorded_result_is_not_the_commitment__waits_and_sends_no_verdict(
    daemon_market, config, accounts, chain, host, tmp_path
):
    _register(daemon_market, accounts[4])
    tid = _validating(daemon_market, chain, accounts, host, tmp_path)
    daemon = ProviderDaemon(daemon_market, accounts[4], config, ws_uri="")
    # What an event that a reorg replaced left behind: another result, and the verdict reached on it.
    daemon.state.upsert_task(tid, "validator", result_locator="00", result_hash=_h("a replaced result").hex(),
                             accepted=True, reason="validate exit 0")
    try:
        started_at = time.time()
        daemon._validator_job(daemon.state.task(tid, "validator"))
        assert daemon_market.task(tid).status == Status.Validating
        assert daemon.state.journal(f"verdict:{tid}") is None
        # Checked again later (when the event comes), not dropped: a check is scheduled after the job began.
        assert daemon.next_check[(tid, "validator")] > started_at
    finally:
        daemon.shutdown()


def test_validator_job__verdict_reached_on_the_commitment__sent_naming_the_onchain_result(
    daemon_market, config, accounts, chain, host, tmp_path
):
    _register(daemon_market, accounts[4])
    tid = _validating(daemon_market, chain, accounts, host, tmp_path)
    committed = daemon_market.result_of(tid)
    daemon = ProviderDaemon(daemon_market, accounts[4], config, ws_uri="")
    # A restart between judging (and offering the result to the requester) and sending: both are kept.
    locator = Envelope(daemon.keypair.public_bytes, (b"ours", b"pass-through")).encode()
    daemon.state.upsert_task(tid, "validator", result_locator="00", result_hash=committed.hex(),
                             judged=committed.hex(), accepted=True, reason="validate exit 0",
                             requester_locator=locator.hex(), offered_for=committed.hex())
    try:
        daemon._validator_job(daemon.state.task(tid, "validator"))
        assert daemon_market.task(tid).status == Status.Completed
        assert daemon.state.journal(f"verdict:{tid}")["status"] == "mined"
        assert daemon.state.task(tid, "validator").stage == "done"
        [verdict] = [e for e in daemon_market.events(0) if e.event_name == "VerdictSubmitted" and e.task_id == tid]
        assert (verdict.result_hash, verdict.accepted, verdict.requester_locator) == (committed, True, locator)
    finally:
        daemon.shutdown()


# ------------------------------------------------------------------------------------------ the offer
def test_provider__start__publishes_the_measured_offer_once(daemon_market, accounts, started):
    provider = accounts[6]
    daemon = started(provider)
    measured = daemon.state.get_meta("offer")
    document = daemon_market.offer_document(daemon_market.worker(provider.address))
    assert document is not None and json.loads(document) == measured
    assert set(measured["runtimes"]) == {"ichain-runtime", "ichain-torch"}
    nonce = provider.nonce
    daemon._publish_offer()  # an unchanged machine sends nothing
    assert provider.nonce == nonce


def test_provider__engine_down_at_start__starts_and_publishes_once_the_engine_answers(
    daemon_market, accounts, config, tmp_path
):
    import docker

    from ichain.daemon.provider import OFFER_RETRY
    from ichain.sandbox import Sandbox

    provider = accounts[7]
    cfg = config.replace(state_dir=tmp_path / "state-down")
    dead = Sandbox(client=docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.43"))
    daemon = ProviderDaemon(daemon_market, provider, cfg, price=ASKING, ws_uri="", sandbox=dead)
    try:
        daemon.start()  # registered; the offer waits for the engine
        assert daemon_market.worker(provider.address).registered
        assert daemon_market.worker(provider.address).offer_hash is None
        daemon._sandbox = Sandbox()  # the engine is back
        daemon._offer_measured -= OFFER_RETRY
        daemon.schedule()
        assert daemon_market.worker(provider.address).offer_hash is not None
    finally:
        daemon.shutdown()
