"""The web page's model and its JSON/HTML without a browser, on a real anvil: ratings as the SDK gives them,
and the requester's recovery policy offered on a task whose provider stays silent."""

from __future__ import annotations

import json
import re

import pytest
from ape import accounts, chain

from web_helpers import get, trusting_pair, web, web_market  # noqa: F401  (fixtures)
from ichain.transfer import KeyPair

pytestmark = [pytest.mark.e2e]


def test_providers__never_rated_worker__the_prior_score_and_no_mean_rather_than_zero(web, web_market):
    worker = accounts.test_accounts[7]
    if not web_market.worker(worker.address).registered:
        web_market.register(KeyPair.generate().public_bytes, 10**15, sender=worker)
    server = web(accounts.test_accounts[6], lambda: web_market)
    row = next(w for w in json.loads(get(server, "/api/providers")) if w["address"] == worker.address)
    assert (row["rating"], row["ratings"], row["score"]) == (None, 0, 3.0)
    assert (row["validator_ratings"], row["missed"]) == (0, 0)
    assert json.loads(get(server, f"/api/provider/{worker.address}"))["rating"] is None
    html = get(server, f"/provider?address={worker.address}")
    shown = re.search(r'<dd id="prov-rating">(.*?)</dd>', html, re.S).group(1)
    assert "3.00" in shown and "(0 ratings)" in shown and "mean" not in shown


def test_task__provider_silent_past_its_deadline__page_offers_the_refund_then_refunds(web, web_market, tmp_path):
    requester, silent, judge = accounts.test_accounts[6], accounts.test_accounts[7], accounts.test_accounts[5]
    trusting_pair(web_market, silent, judge)  # no daemon behind them
    server = web(requester, lambda: web_market)
    service = server.app.state.service
    tid = service.submit(folder=str(service.tasks_root / "digits"), price="0.001", validator_fee="0.001",
                         provider=silent.address, validator="auto")
    assert web_market.task(tid).validator == judge.address
    assert service.task(tid)["recovery"] is None  # the provider still has time
    chain.provider.make_request("evm_increaseTime", [web_market.default_timeout + 5])
    chain.provider.make_request("evm_mine", [])
    service.invalidate()
    view = service.task(tid)
    assert view["recovery"].startswith("The provider missed its deadline: claim the refund")
    assert view["can"]["stop"] and "whole deposit" in view["stop_hint"]
    assert "Task %d expired" % tid in service.stop(tid)
    assert web_market.task(tid).status.name == "Expired"
