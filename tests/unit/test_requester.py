"""The requester session (protocol v2): the provider picked by score and the validator from THAT provider's
trusted set, checks before any deposit, persistence and resume, the result opened only from the accepting
verdict's locator and verified against resultOf, the sealed failure report (neutralised), explicit ratings,
and the refund-only recovery policy for silent parties.

The provider and validator are played by the test through the SDK and the transfer layer (no daemon, no
Docker): what is checked is what the requester does with what they put on chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from offer_helpers import publish

from ichain.config import load_config
from ichain.market import InvalidRating, InvalidValidator, Status, Task
from ichain.requester import Recovery, RequestError, RequesterSession, advise, recover
from ichain.sandbox import TaskFormatError, pack_result
from ichain.transfer import ChunkHost, DirectTransport, KeyPair, TransferContext
from ichain.transfer.envelope import Envelope
from ichain.transfer.report import seal_report

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
PRICE = 3 * 10**15


@pytest.fixture(scope="module")
def keys():
    """The X25519 key pairs of the workers the test plays, by account index."""
    return {i: KeyPair.generate() for i in (3, 4, 5, 6, 7)}


@pytest.fixture(scope="module")
def req_market(accounts, keys):
    """A market where 4 (cheapest) trusts 3, 3 trusts 5 and 4, and 6 (cheaper still) trusts nobody; all of them
    offer ichain-runtime, 3 ichain-torch too. 7, the cheapest of all, trusts 3 but offers only ichain-torch."""
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    d = deploy(accounts[9], validation_window=60, min_timeout=30, max_timeout=3600, save=False)
    market = get_market(d.market)
    for idx, price in ((3, PRICE), (4, 10**15), (5, 2 * 10**15), (6, 5 * 10**14), (7, 10**14)):
        market.register(keys[idx].public_bytes, price, sender=accounts[idx])
    for idx, runtimes in ((3, ("ichain-runtime", "ichain-torch")), (4, ("ichain-runtime",)),
                          (5, ("ichain-runtime",)), (6, ("ichain-runtime",)), (7, ("ichain-torch",))):
        publish(market, accounts[idx], *runtimes)
    market.set_trust(accounts[3].address, True, sender=accounts[7])
    market.set_trust(accounts[3].address, True, sender=accounts[4])
    market.set_trust(accounts[5].address, True, sender=accounts[3])
    market.set_trust(accounts[4].address, True, sender=accounts[3])
    return market


@pytest.fixture
def config(tmp_path):
    return load_config(state_dir=tmp_path / "state")


@pytest.fixture
def sessions(req_market, accounts, config):
    made: list[RequesterSession] = []

    def make() -> RequesterSession:
        s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _ctx(session: RequesterSession, role: str, sender: KeyPair) -> TransferContext:
    return TransferContext(session.data["chain_id"], session.data["market"], int(session.task_id), role,
                           session.data["requester"], sender.public_bytes)


def test_prepare__bad_task_folder__task_format_error_and_no_session(tmp_path, req_market, accounts, config):
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(TaskFormatError) as info:
        RequesterSession.prepare(bad, market=req_market, account=accounts[0], config=config)
    assert "\n" not in str(info.value)
    assert RequesterSession.list(config=config, address=accounts[0].address) == []


def test_prepare__digits__packaged_with_hash_and_persisted(sessions):
    s = sessions()
    saved = json.loads((s.root / "session.json").read_text())
    assert saved["stage"] == "prepared" and len(bytes.fromhex(saved["task_hash"])) == 32
    assert not (s.root / "task.tar.part").exists() and (s.root / "task.tar").stat().st_size == saved["task_size"]


def test_post__best_and_auto__top_provider_with_a_trusted_validator_and_its_best_validator(sessions, req_market,
                                                                                          accounts):
    s = sessions()
    tid = s.post(provider="best", validator="auto", timeout=60)
    # 6 is the cheapest but trusts nobody; 4 is next and trusts 3 (never itself).
    assert (s.data["provider"], s.data["validator"]) == (accounts[4].address, accounts[3].address)
    task = req_market.task(tid)
    assert (task.status, task.provider, task.validator) == (Status.Executing, accounts[4].address,
                                                            accounts[3].address)
    assert (task.price, task.validator_fee) == (10**15, PRICE)  # the asking prices
    snap = s.status()
    json.dumps(snap)  # JSON-able for the web page
    assert snap["task_id"] == tid and snap["stage"] == "posted"
    uploads = snap["progress"]["uploads"]
    assert list(uploads) == ["task-provider"]  # hosted for the provider only, never for the validator
    assert uploads["task-provider"]["chunks"] == len(uploads["task-provider"]["served"]) >= 1


def test_choose_parties__fee_below_the_top_validator__next_trusted_validator_that_fits(sessions, accounts):
    s = sessions()
    # 3 trusts 5 (asks 0.002) and 4 (asks 0.001): a fee of 0.0015 only fits 4.
    assert s.choose_parties(accounts[3].address, "auto", validator_fee=15 * 10**14) == (
        accounts[3].address, accounts[4].address)
    with pytest.raises(RequestError, match="trusts no available validator"):
        s.choose_parties(accounts[3].address, "auto", validator_fee=10)


def test_choose_parties__named_validator__best_provider_that_trusts_it(sessions, accounts):
    s = sessions()
    assert s.choose_parties("best", accounts[5].address) == (accounts[3].address, accounts[5].address)


def _task_folder(root: Path, manifest: dict) -> Path:
    folder = root / "task"
    folder.mkdir()
    (folder / "task.py").write_text("import sys\n")
    (folder / "ichain.json").write_text(json.dumps(manifest))
    return folder


def test_choose_parties__torch_task__only_providers_and_validators_offering_its_runtime(
    tmp_path, req_market, accounts, config
):
    s = RequesterSession.prepare(_task_folder(tmp_path, {"image": "ichain-torch"}), market=req_market,
                                 account=accounts[0], config=config)
    try:
        # 7 is the cheapest and the only ichain-torch provider besides 3; the validator (3) offers it too.
        assert [w.address for w in s.rank_providers()] == [accounts[7].address, accounts[3].address]
        assert s.choose_parties("best", "auto") == (accounts[7].address, accounts[3].address)
        assert s.why_not(accounts[4].address) == (
            f"{accounts[4].address} cannot run this task: needs runtime ichain-torch (has ichain-runtime)")
        assert s.why_not(accounts[3].address) is None
    finally:
        s.close()


def test_choose_parties__digits__a_provider_without_its_runtime_is_never_chosen(sessions, accounts):
    s = sessions()
    assert accounts[7].address not in [w.address for w in s.rank_providers()]
    assert s.choose_parties("best", "auto") == (accounts[4].address, accounts[3].address)


def test_post__task_no_provider_can_run__one_line_error_before_any_transaction(tmp_path, req_market, accounts,
                                                                                 config):
    s = RequesterSession.prepare(_task_folder(tmp_path, {"memory": "64g"}), market=req_market, account=accounts[0],
                                 config=config)
    nonce = accounts[0].nonce
    try:
        with pytest.raises(RequestError, match=r"no available provider can run this task: needs 64 GiB memory "
                                               r"\(gives at most 4 GiB\) \(\d+ checked") as info:
            s.post(provider="best", validator="auto", timeout=60)
        assert "\n" not in str(info.value)
        assert accounts[0].nonce == nonce and s.task_id is None
    finally:
        s.close()


def test_post__no_validator__request_error_before_any_transaction(sessions, accounts):
    s = sessions()
    nonce = accounts[0].nonce
    for missing in (None, "", "later"):
        with pytest.raises(RequestError, match="name a validator"):
            s.post(provider=accounts[3].address, validator=missing)
    assert accounts[0].nonce == nonce and s.task_id is None


def test_post__validator_the_provider_does_not_trust__sdk_refuses_before_sending(sessions, accounts):
    from ichain.market import ValidatorNotTrusted

    s = sessions()
    nonce = accounts[0].nonce
    with pytest.raises((ValidatorNotTrusted, InvalidValidator)):
        s.post(provider=accounts[6].address, validator=accounts[3].address, timeout=60)
    assert accounts[0].nonce == nonce


def test_load__restarted_process__resumes_by_task_id(sessions, req_market, accounts, config):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    s.close()
    again = RequesterSession.load(f"#{tid}", market=req_market, account=accounts[0], config=config)
    assert again.data["id"] == s.data["id"] and again.refresh().status.name == "Executing"


def test_post__twice__request_error(sessions, accounts):
    s = sessions()
    s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    with pytest.raises(RequestError, match="already posted"):
        s.post(provider=accounts[3].address, validator=accounts[5].address)


def test_fetch_result__no_verdict_yet__request_error(sessions, accounts):
    s = sessions()
    s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    with pytest.raises(RequestError, match="has no result yet"):
        s.fetch_result()


def test_load__unknown_session__request_error(req_market, accounts, config):
    with pytest.raises(RequestError, match="no request session"):
        RequesterSession.load("nope", market=req_market, account=accounts[0], config=config)


# ---- the accept: the result opens only from the verdict's locator --------------------------------------
def _commit_and_accept(s, req_market, accounts, keys, tmp_path, *, validator_item: bytes | None = None):
    """Play provider 3 and validator 5: package a result, commit it, host the validator's copy, accept."""
    tid = int(s.task_id)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.97}))
    archive = tmp_path / "result.tar"
    digest = pack_result(out, archive, {"chain_id": s.data["chain_id"], "market": s.data["market"], "task_id": tid,
                                        "provider": accounts[3].address})
    host = ChunkHost(tmp_path / "host", transport=DirectTransport())
    host.start()
    me = s._keypair().public_bytes  # the requester key its task envelope carried
    from_validator = host.offer(archive, me, _ctx(s, "result-requester", keys[5]))
    # The validator locator: [the bundle for V (a stand-in here)]; nothing in it is sealed to the requester.
    req_market.submit_result(tid, digest, Envelope(keys[3].public_bytes, (b"\x01",)).encode(), sender=accounts[3])
    assert s.refresh().status == Status.Validating
    with pytest.raises(RequestError, match="has no result yet"):
        s.fetch_result()  # nothing opens before the accept
    item0 = from_validator if validator_item is None else validator_item
    req_market.submit_verdict(tid, digest, True, Envelope(keys[5].public_bytes, (item0,)).encode(),
                              sender=accounts[5])
    return host, digest


def test_fetch_result__accepted__validator_copy_verified_against_result_of(sessions, req_market, accounts, keys,
                                                                           tmp_path):
    s = sessions()
    s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    host, digest = _commit_and_accept(s, req_market, accounts, keys, tmp_path)
    try:
        assert s.refresh().status == Status.Completed and s.data["accepted"] is True
        dest = s.fetch_result(tmp_path / "got")
        assert s.data["result_from"] == "validator"
        assert s.data["metrics"] == {"accuracy": 0.97} and any(dest.iterdir())
        assert s.data["settled"]["payout"] > 0 and s.data["settled"]["validator_paid"] > 0
    finally:
        host.stop()


def test_fetch_result__validator_copy_does_not_open__request_error_and_nothing_kept(sessions, req_market, accounts,
                                                                                  keys, tmp_path):
    s = sessions()
    s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    host, _ = _commit_and_accept(s, req_market, accounts, keys, tmp_path, validator_item=b"junk" * 20)
    s.fetch_patience = 0
    try:
        with pytest.raises(RequestError):
            s.fetch_result(tmp_path / "got")
        assert not s.data.get("result_ok") and not (tmp_path / "got").exists()
    finally:
        host.stop()


def test_rate__completed__explicit_ratings_recorded_once(sessions, req_market, accounts, keys, tmp_path):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    host, _ = _commit_and_accept(s, req_market, accounts, keys, tmp_path)
    host.stop()
    nonce = accounts[0].nonce
    with pytest.raises(InvalidRating):
        s.rate(6)
    assert accounts[0].nonce == nonce and "rating" not in s.data
    s.rate(4, 5)
    assert req_market.task(tid).status == Status.Rated
    assert (s.data["rating"], s.data["validator_rating"], s.data["stage"]) == (4, 5, "rated")


def test_reject__dispute__no_result_and_price_plus_fee_refunded(sessions, req_market, accounts, keys):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    digest = bytes(range(32))
    req_market.submit_result(tid, digest, Envelope(keys[3].public_bytes, (b"\x01",)).encode(), sender=accounts[3])
    req_market.submit_verdict(tid, digest, False, sender=accounts[5])
    assert s.refresh().status == Status.Rejected and s.data["accepted"] is False
    assert s.data["settled"]["refund"] == PRICE + 2 * 10**15
    with pytest.raises(RequestError, match="has no result yet"):
        s.fetch_result()


# ---- the provider declines ----------------------------------------------------------------------------
def test_decline__provider_gives_the_task_back__settled_refund_and_reason_neutralised(sessions, req_market,
                                                                                       accounts):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    credit = req_market.credit(accounts[0])
    req_market.decline(tid, "needs runtime ichain-torch\x1b[2J\u202e; this provider has ichain-runtime",
                       sender=accounts[3])
    assert s.wait_for("Completed", timeout=30) == "Declined"  # a settled status ends any wait
    assert s.data["settled"] == {"event": "TaskDeclined", "refund": PRICE + 2 * 10**15, "payout": 0}
    assert "\x1b" not in s.data["declined"] and "\u202e" not in s.data["declined"]
    assert s.data["declined"].startswith("needs runtime ichain-torch\\x1b[2J")
    assert req_market.credit(accounts[0]) == credit + PRICE + 2 * 10**15
    with pytest.raises(RequestError, match="has no result yet"):
        s.fetch_result()


def test_run_round__provider_declines__one_line_with_the_reason_and_the_refund(sessions, req_market, accounts):
    from ichain.requester import run_round

    s = sessions()
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("posted task "):  # the provider, played here, declines as soon as it is named
            req_market.decline(int(s.task_id), "needs runtime ichain-torch; this provider has ichain-runtime",
                               sender=accounts[3])

    outcome = run_round(s, provider=accounts[3].address, validator=accounts[5].address, timeout=60, rating=5,
                        wait_timeout=60, echo=echo)
    refund = PRICE + 2 * 10**15
    assert (outcome.status, outcome.refund, outcome.rating, outcome.result_dir) == (Status.Declined, refund, None,
                                                                                    None)
    assert lines[-1] == (f"the provider declined: needs runtime ichain-torch; this provider has ichain-runtime; "
                         f"your deposit of {refund} wei is refunded (ape ichain withdraw pays it out)")
    assert req_market.task(outcome.task_id).status == Status.Declined  # nothing rated, nothing else sent


# ---- the failure report ----------------------------------------------------------------------------
HOSTILE = ("Traceback (most recent call last):\n  File \"task.py\", line 3\n"
           "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x9b31m\u202eevil\nValueError: boom \x1b[31mred\x1b[0m\n")


def test_failure__report_with_escape_sequences__opened_and_neutralised(sessions, req_market, accounts, keys):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    report = seal_report(s._keypair().public_bytes, _ctx(s, "failure-report", keys[3]), 1, "execute", HOSTILE,
                         keys[3])
    req_market.report_failure(tid, report, sender=accounts[3])
    assert s.refresh().status == Status.Failed
    failure = s.failure()
    assert (failure["exit_code"], failure["stage"]) == (1, "execute")
    assert failure["error_line"].startswith("ValueError: boom")
    text = json.dumps(failure, ensure_ascii=False)
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in failure["stderr_tail"] and raw not in failure["error_line"], repr(raw)
    assert "\\x1b" in text and "evil" in failure["stderr_tail"]
    assert s.data["settled"]["refund"] > 0 and s.data["settled"]["payout"] > 0  # the failure fee
    # A failed task is rated like a completed one, but never its validator (it gave no verdict).
    s.rate(2)
    assert req_market.task(tid).status == Status.Rated


def test_failure__report_sealed_for_another_requester__says_it_did_not_open(sessions, req_market, accounts, keys):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    stranger = KeyPair.generate()
    report = seal_report(stranger.public_bytes, _ctx(s, "failure-report", keys[3]), 1, "execute", "x", keys[3])
    req_market.report_failure(tid, report, sender=accounts[3])
    failure = s.failure()
    assert failure["exit_code"] is None and "did not open" in failure["error"]


# ---- the recovery policy ------------------------------------------------------------------------------
def _task(status: Status, deadline: int = 1000) -> Task:
    return Task(task_id=7, requester="0x" + "11" * 20, status=status, deadline=deadline, provider="0x" + "22" * 20,
                validator="0x" + "33" * 20, price=10, validator_fee=1, timeout=60)


@pytest.mark.parametrize("status", [Status.Pending, Status.Executing, Status.Validating])
def test_advise__awaited_party_silent_past_deadline__refund(status):
    assert advise(_task(status), now=1001).action is Recovery.REFUND


@pytest.mark.parametrize("status", [Status.Executing, Status.Validating, Status.Completed, Status.Failed])
def test_advise__deadline_not_passed_or_nothing_to_do__none(status):
    assert advise(_task(status), now=1000).action is Recovery.NONE
    if status in (Status.Completed, Status.Failed):
        assert advise(_task(status), now=5000).action is Recovery.NONE


def test_recover__provider_silent_past_its_deadline__deposit_refunded(sessions, req_market, accounts, chain):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    assert recover(s).action is Recovery.NONE  # the provider still has time
    chain.provider.make_request("evm_increaseTime", [61])
    chain.provider.make_request("evm_mine", [])
    assert recover(s).action is Recovery.REFUND
    assert req_market.task(tid).status == Status.Expired
    assert s.data["settled"] == {"event": "TaskExpired", "refund": PRICE + 2 * 10**15, "payout": 0}


def test_for_task__posted_here_or_elsewhere__session_or_none(sessions, req_market, accounts, config):
    s = sessions()
    tid = s.post(provider=accounts[3].address, validator=accounts[5].address, timeout=60)
    s.close()
    found = RequesterSession.for_task(tid, market=req_market, account=accounts[0], config=config)
    assert found is not None and found.data["id"] == s.data["id"]
    assert RequesterSession.for_task(tid + 1000, market=req_market, account=accounts[0], config=config) is None
