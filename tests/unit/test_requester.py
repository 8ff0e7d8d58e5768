"""The requester session: checks before any deposit, persistence, resume, JSON-able status; the recovery
policy for silent parties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ichain.config import load_config
from ichain.market import InvalidRating, Status, Task
from ichain.requester import Recovery, RequestError, RequesterSession, advise, recover
from ichain.sandbox import TaskFormatError
from ichain.transfer import KeyPair

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(scope="module")
def req_market(accounts):
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    d = deploy(accounts[9], review_window=30, validation_window=60, min_timeout=30, max_timeout=3600, save=False)
    market = get_market(d.market)
    for idx, price in ((3, 3 * 10**15), (4, 10**15)):
        if not market.worker(accounts[idx].address).registered:
            market.register(KeyPair.generate().public_bytes, price, sender=accounts[idx])
    return market


@pytest.fixture
def config(tmp_path):
    return load_config(state_dir=tmp_path / "state")


def test_prepare__bad_task_folder__task_format_error_and_no_session(tmp_path, req_market, accounts, config):
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(TaskFormatError) as info:
        RequesterSession.prepare(bad, market=req_market, account=accounts[0], config=config)
    assert "\n" not in str(info.value)
    assert RequesterSession.list(config=config, address=accounts[0].address) == []


def test_prepare__digits__packaged_with_hash_and_persisted(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    saved = json.loads((s.root / "session.json").read_text())
    assert saved["stage"] == "prepared" and len(bytes.fromhex(saved["task_hash"])) == 32
    assert not (s.root / "task.tar.part").exists() and (s.root / "task.tar").stat().st_size == saved["task_size"]


def test_post__best_provider__cheapest_chosen_and_task_executing(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        tid = s.post(provider="best", validator=None, timeout=60)
        assert s.data["provider"] == accounts[4].address  # unrated workers: cheaper first
        assert req_market.task(tid).status.name == "Executing"
        snap = s.status()
        json.dumps(snap)  # JSON-able for the web page
        assert snap["task_id"] == tid and snap["stage"] == "posted"
        upload = snap["progress"]["uploads"]["task-provider"]  # per-chunk serving progress
        assert upload["chunks"] == len(upload["served"]) >= 1
    finally:
        s.close()


def test_load__restarted_process__resumes_by_task_id(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        tid = s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
    finally:
        s.close()
    again = RequesterSession.load(f"#{tid}", market=req_market, account=accounts[0], config=config)
    assert again.data["id"] == s.data["id"] and again.refresh().status.name == "Executing"


def test_post__twice__request_error(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
        with pytest.raises(RequestError, match="already posted"):
            s.post(provider=accounts[3].address)
    finally:
        s.close()


def test_fetch_result__no_result_yet__request_error(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
        with pytest.raises(RequestError, match="has no result yet"):
            s.fetch_result()
    finally:
        s.close()


def test_load__unknown_session__request_error(req_market, accounts, config):
    with pytest.raises(RequestError, match="no request session"):
        RequesterSession.load("nope", market=req_market, account=accounts[0], config=config)


# ---- the recovery policy ------------------------------------------------------------------------------
def _task(status: Status, deadline: int = 1000) -> Task:
    return Task(task_id=7, requester="0x" + "11" * 20, status=status, deadline=deadline, provider="0x" + "22" * 20,
                validator="0x" + "33" * 20, price=10, validator_fee=1, timeout=60)


@pytest.mark.parametrize("status", [Status.Pending, Status.Executing])
def test_advise__provider_silent_past_deadline__refund(status):
    assert advise(_task(status), now=1001, replacement=None).action is Recovery.REFUND


def test_advise__validator_silent_past_deadline__replaced_by_the_other_worker():
    advice = advise(_task(Status.Validating), now=1001, replacement="0x" + "44" * 20)
    assert (advice.action, advice.replacement) == (Recovery.REPLACE_VALIDATOR, "0x" + "44" * 20)


def test_advise__validator_silent_and_nobody_else__refund():
    assert advise(_task(Status.Validating), now=1001, replacement=None).action is Recovery.REFUND


@pytest.mark.parametrize("status", [Status.Executing, Status.Validating, Status.AwaitingValidator, Status.Accepted])
def test_advise__deadline_not_passed_or_nothing_to_do__none(status):
    assert advise(_task(status), now=1000, replacement="0x" + "44" * 20).action is Recovery.NONE
    if status in (Status.AwaitingValidator, Status.Accepted):
        assert advise(_task(status), now=5000, replacement="0x" + "44" * 20).action is Recovery.NONE


def test_recover__provider_silent_past_its_deadline__deposit_refunded(req_market, accounts, config, chain):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        tid = s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
        assert recover(s).action is Recovery.NONE  # the provider still has time
        chain.provider.make_request("evm_increaseTime", [61])
        chain.provider.make_request("evm_mine", [])
        assert recover(s).action is Recovery.REFUND
        assert req_market.task(tid).status == Status.Expired
        assert s.data["settled"] == {"event": "TaskExpired", "refund": 3 * 10**15, "payout": 0}
    finally:
        s.close()


def test_finalize__rating_out_of_range__sdk_refuses_before_sending(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
        nonce = accounts[0].nonce
        with pytest.raises(InvalidRating):
            s.finalize(6)
        assert accounts[0].nonce == nonce and "rating" not in s.data
    finally:
        s.close()


def test_for_task__posted_here_or_elsewhere__session_or_none(req_market, accounts, config):
    s = RequesterSession.prepare(DIGITS, market=req_market, account=accounts[0], config=config)
    try:
        tid = s.post(provider=accounts[3].address, validator=None, price=3 * 10**15, timeout=60)
    finally:
        s.close()
    found = RequesterSession.for_task(tid, market=req_market, account=accounts[0], config=config)
    assert found is not None and found.data["id"] == s.data["id"]
    assert RequesterSession.for_task(tid + 1000, market=req_market, account=accounts[0], config=config) is None
