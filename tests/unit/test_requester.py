"""The requester session: checks before any deposit, persistence, resume, JSON-able status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ichain.config import load_config
from ichain.requester import RequestError, RequesterSession
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
