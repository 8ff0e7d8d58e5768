"""The SDK (ichain.market): typed pre-checks before sending, domain objects, typed events, ranking."""

from __future__ import annotations

import pytest

from ichain import market as m
from ichain.errors import IChainError



def test_provider__ape_test__is_anvil(chain):
    assert chain.provider.name == "foundry"
    assert "anvil" in chain.provider.web3.client_version.lower()


def test_post__provider_and_validator__task_executing_with_escrow(market, requester, workers, market_contract, consts,
                                                                  new_hash):
    provider, validator, *_ = workers
    balance = market_contract.balance
    c = consts
    task = market.post(new_hash(), price=c.PRICE, validator_fee=c.FEE, provider=provider, validator=validator,
                       provider_locator=c.LOCATOR, validator_locator=c.LOCATOR, sender=requester)
    assert task.status == m.Status.Executing
    assert (task.requester, task.provider, task.validator) == (requester.address, provider.address, validator.address)
    assert (task.price, task.validator_fee, task.deposit) == (c.PRICE, c.FEE, c.PRICE + c.FEE)
    assert market_contract.balance == balance + c.PRICE + c.FEE


def test_lifecycle__happy_path__provider_and_validator_paid_rating_recorded(market, workers, task_in, consts):
    provider, validator, *_ = workers
    task, rh = task_in("Completed")
    assert task.status == m.Status.Completed
    assert market.credit(provider) == consts.PRICE
    assert market.credit(validator) == consts.FEE
    w = market.worker(provider)
    assert (w.rating_count, w.average_rating) == (1, 4.0)
    assert market.withdraw(sender=provider) == consts.PRICE
    assert market.credit(provider) == 0
