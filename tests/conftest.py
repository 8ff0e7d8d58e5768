"""Shared session fixtures for the Ape test suite (anvil through ape-foundry).

One fixture per actor, the deployed contracts with short windows, the ``market`` SDK on them, registered
workers, and factory fixtures that bring a task to any state of its lifecycle. Ape isolates every test
(snapshot / revert), so state made by a test never leaks into the next one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

# Short windows so tests can move time past them cheaply (seconds).
REVIEW_WINDOW = 100
VALIDATION_WINDOW = 200
MIN_TIMEOUT = 60
MAX_TIMEOUT = 86_400
TIMEOUT = 600

PRICE = 10**16  # what the task pays the provider
FEE = 10**15  # validator fee
ASKING = 10**15  # workers' asking price
LOCATOR = bytes(range(150))  # stands for a sealed locator (opaque bytes, only emitted)

_counter = itertools.count(1)


def unique_hash(label: str = "h") -> bytes:
    """A fresh non-zero 32-byte hash (sha256 of a unique label)."""
    return hashlib.sha256(f"{label}-{next(_counter)}-{os.getpid()}".encode()).digest()


@pytest.fixture(scope="session")
def consts() -> SimpleNamespace:
    """The test constants (windows, amounts, locator) for test modules (they cannot import conftest)."""
    return SimpleNamespace(
        REVIEW_WINDOW=REVIEW_WINDOW, VALIDATION_WINDOW=VALIDATION_WINDOW, MIN_TIMEOUT=MIN_TIMEOUT,
        MAX_TIMEOUT=MAX_TIMEOUT, TIMEOUT=TIMEOUT, PRICE=PRICE, FEE=FEE, ASKING=ASKING, LOCATOR=LOCATOR,
    )


@pytest.fixture(scope="session")
def new_hash() -> Callable[[str], bytes]:
    """Factory of fresh non-zero 32-byte hashes."""
    return unique_hash


# ------------------------------------------------------------------ actors
@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def requester(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def provider(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def validator(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def outsider(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def provider2(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def validator2(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def requester2(accounts):
    return accounts[7]


# ------------------------------------------------------------------ contracts
@pytest.fixture(scope="session")
def market_contract(project, deployer):
    """TaskMarket with the short test windows (it deploys Ratings)."""
    return project.TaskMarket.deploy(REVIEW_WINDOW, VALIDATION_WINDOW, MIN_TIMEOUT, MAX_TIMEOUT, sender=deployer)


@pytest.fixture(scope="session")
def ratings_contract(project, market_contract):
    return project.Ratings.at(market_contract.ratings())


@pytest.fixture(scope="session")
def market(market_contract):
    """The SDK over the session's contracts."""
    from ichain.market import Market

    return Market(market_contract.address)


@pytest.fixture(scope="session")
def workers(market, provider, validator, provider2, validator2):
    """provider, validator, provider2, validator2 registered and available, asking ASKING wei."""
    for who in (provider, validator, provider2, validator2):
        market.register(unique_hash("key"), ASKING, sender=who)
    return provider, validator, provider2, validator2


# ------------------------------------------------------------------ time
@pytest.fixture(scope="session")
def advance(chain) -> Callable[[int], int]:
    """Move chain time forward by ``seconds`` and mine a block; returns the new head timestamp."""

    def _advance(seconds: int) -> int:
        chain.provider.make_request("evm_increaseTime", [int(seconds)])
        chain.provider.make_request("evm_mine", [])
        return int(chain.blocks.head.timestamp)

    return _advance


@pytest.fixture(scope="session")
def past_deadline(market, advance) -> Callable[[int], None]:
    """Move time just past the current deadline of a task."""

    def _past(task_id: int) -> None:
        from ape import chain

        deadline = market.task(task_id).deadline
        now = int(chain.blocks.head.timestamp)
        advance(max(deadline - now + 1, 1))

    return _past


# ------------------------------------------------------------------ task factories
@pytest.fixture(scope="session")
def post_task(market, requester, workers) -> Callable[..., Any]:
    """Post a task through the SDK; by default with provider and validator named (Executing)."""
    provider, validator, *_ = workers

    def _post(
        *, provider: Any = provider, validator: Any = validator, price: int = PRICE, fee: int = FEE,
        sender: Any = requester, timeout: int = TIMEOUT,
    ):
        return market.post(
            unique_hash("task"), price=price, validator_fee=fee, provider=provider, validator=validator,
            provider_locator=LOCATOR, validator_locator=LOCATOR, timeout=timeout, sender=sender,
        )

    return _post


@pytest.fixture(scope="session")
def task_in(market, post_task, requester, workers) -> Callable[..., Any]:
    """Bring a fresh task to ``status`` (a name: Pending, Executing, AwaitingValidator, Validating, Accepted,
    Rejected, Completed, Closed, Cancelled) through the SDK; returns (task, result_hash or None)."""
    provider, validator, *_ = workers

    def _task_in(status: str, **kwargs: Any):
        if status == "Pending":
            return post_task(provider=None, **kwargs), None
        if status == "Cancelled":
            task = post_task(provider=None, **kwargs)
            return market.cancel(task.task_id, sender=requester), None
        kwargs.setdefault("validator", None if status == "AwaitingValidator" else validator)
        named_validator = kwargs["validator"] is not None
        task = post_task(**kwargs)
        if status == "Executing":
            return task, None
        rh = unique_hash("result")
        task = market.submit_result(task.task_id, rh, LOCATOR, LOCATOR if named_validator else b"", sender=provider)
        if status in ("AwaitingValidator", "Validating"):
            return task, rh
        accept = status in ("Accepted", "Completed")
        task = market.submit_verdict(task.task_id, rh, accept, sender=validator)
        if status in ("Accepted", "Rejected"):
            return task, rh
        return market.finalize(task.task_id, 4, sender=requester), rh

    return _task_in


@pytest.fixture
def overclaim_task(tmp_path) -> Path:
    """examples/digits with ``claim_offset`` 0.03 in its config: it runs fine and every validator rejects it."""
    folder = tmp_path / "digits-overclaim"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "digits", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "claim_offset": 0.03}))
    return folder
