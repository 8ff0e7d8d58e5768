"""Shared session fixtures for the Ape test suite (anvil through ape-foundry).

One fixture per actor, the deployed contracts with short windows, the ``market`` SDK on them, registered
workers with their trust set up (provider trusts validator, provider2 trusts validator2), and factory fixtures
that bring a task to any state of the protocol v2 lifecycle. Ape isolates every test (snapshot / revert), so
state made by a test never leaks into the next one.
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
VALIDATION_WINDOW = 200
MIN_TIMEOUT = 60
MAX_TIMEOUT = 86_400
TIMEOUT = 600

PRICE = 10**16  # what the task pays the provider
FEE = 10**15  # validator fee
ASKING = 10**15  # workers' asking price
LOCATOR = bytes(range(150))  # stands for a sealed locator (opaque bytes, only emitted)
REPORT = b"\x03" + bytes(range(1, 100))  # stands for a sealed failure report (1..1024 opaque bytes)
COLLATERAL = FEE + PRICE // 10  # what the provider posts with its result (collateralFor(PRICE, FEE))
DECLINE_REASON = "needs runtime ichain-torch; this provider has ichain-runtime"  # a provider's plain-text reason

_counter = itertools.count(1)


def unique_hash(label: str = "h") -> bytes:
    """A fresh non-zero 32-byte hash (sha256 of a unique label)."""
    return hashlib.sha256(f"{label}-{next(_counter)}-{os.getpid()}".encode()).digest()


@pytest.fixture(scope="session")
def consts() -> SimpleNamespace:
    """The test constants (windows, amounts, locator) for test modules (they cannot import conftest)."""
    return SimpleNamespace(
        VALIDATION_WINDOW=VALIDATION_WINDOW, MIN_TIMEOUT=MIN_TIMEOUT, MAX_TIMEOUT=MAX_TIMEOUT, TIMEOUT=TIMEOUT,
        PRICE=PRICE, FEE=FEE, ASKING=ASKING, LOCATOR=LOCATOR, REPORT=REPORT, COLLATERAL=COLLATERAL,
        DECLINE_REASON=DECLINE_REASON,
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
    return project.TaskMarket.deploy(VALIDATION_WINDOW, MIN_TIMEOUT, MAX_TIMEOUT, sender=deployer)


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
    """provider, validator, provider2, validator2 registered and available, asking ASKING wei; provider trusts
    validator and provider2 trusts validator2 (the pairs :func:`post_task` names by default)."""
    for who in (provider, validator, provider2, validator2):
        market.register(unique_hash("key"), ASKING, sender=who)
    market.set_trust(validator, sender=provider)
    market.set_trust(validator2, sender=provider2)
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
_DEFAULT = object()  # "the validator the task's provider trusts" (None is a real choice: no provider)

# The states task_in reaches, and what each returns alongside the task.
TASK_STATES = ("Pending", "Executing", "Validating", "Completed", "Failed", "Rejected", "Rated", "Cancelled",
               "Expired", "Declined")


@pytest.fixture(scope="session")
def post_task(market, requester, workers) -> Callable[..., Any]:
    """Post a task through the SDK; by default with the provider named (Executing) and the validator it trusts.

    Keywords: ``provider`` (None: Pending), ``validator`` (default: validator2 for provider2, else validator),
    ``price``, ``fee``, ``sender``, ``timeout``, ``locator``, ``task_hash``.
    """
    default_provider, trusted_by_provider, provider2, trusted_by_provider2 = workers

    def _post(
        *, provider: Any = default_provider, validator: Any = _DEFAULT, price: int = PRICE, fee: int = FEE,
        sender: Any = requester, timeout: int = TIMEOUT, locator: bytes | None = None, task_hash: bytes | None = None,
    ):
        if validator is _DEFAULT:
            second = provider is not None and provider.address == provider2.address
            validator = trusted_by_provider2 if second else trusted_by_provider
        return market.post(
            task_hash or unique_hash("task"), price=price, validator_fee=fee, provider=provider, validator=validator,
            locator=(LOCATOR if provider is not None else b"") if locator is None else locator, timeout=timeout,
            sender=sender,
        )

    return _post


@pytest.fixture(scope="session")
def task_in(market, post_task, requester, workers, outsider, past_deadline, accounts) -> Callable[..., Any]:
    """Bring a fresh task to ``status`` through the SDK; returns ``(task, result_hash or None)``.

    ``status`` is one of :data:`TASK_STATES`: Pending, Executing, Validating, Completed (accepted), Failed
    (failure reported), Rejected, Rated (Completed then rated ``rating``), Cancelled, Expired (from
    ``expire_from``: Pending, Executing or Validating, default Executing), Declined (by its provider, with
    ``DECLINE_REASON``). Other keywords go to
    :func:`post_task` (a provider's default validator is the one it trusts). ``rating`` is
    ``(provider_rating, validator_rating)`` for Rated, default (4, 4).
    """

    by_address = {a.address: a for a in accounts}

    def _account(address: str) -> Any:
        return by_address[address]

    def _task_in(status: str, *, rating: tuple[int, int] = (4, 4), expire_from: str = "Executing", **kwargs: Any):
        if status not in TASK_STATES:
            raise ValueError(f"task_in cannot reach {status!r}; one of {', '.join(TASK_STATES)}")
        if status == "Expired":
            task, rh = _task_in(expire_from, **kwargs)
            past_deadline(task.task_id)
            return market.expire(task.task_id, sender=outsider), rh
        if status in ("Pending", "Cancelled"):
            kwargs["provider"] = None
        task = post_task(**kwargs)
        if status == "Pending":
            return task, None
        if status == "Cancelled":
            return market.cancel(task.task_id, sender=requester), None
        if status == "Executing":
            return task, None
        sender = kwargs.get("sender", requester)
        prov = _account(task.provider)
        if status == "Failed":
            return market.report_failure(task.task_id, REPORT, sender=prov), None
        if status == "Declined":
            return market.decline(task.task_id, DECLINE_REASON, sender=prov), None
        val = _account(task.validator)
        rh = unique_hash("result")
        task = market.submit_result(task.task_id, rh, LOCATOR, sender=prov)
        if status == "Validating":
            return task, rh
        accept = status in ("Completed", "Rated")
        task = market.submit_verdict(task.task_id, rh, accept, LOCATOR if accept else b"", sender=val)
        if status in ("Completed", "Rejected"):
            return task, rh
        return market.rate(task.task_id, *rating, sender=sender), rh

    return _task_in


@pytest.fixture
def overclaim_task(tmp_path) -> Path:
    """examples/digits with ``claim_offset`` 0.03 in its config: it runs fine and every validator rejects it."""
    folder = tmp_path / "digits-overclaim"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "digits", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "claim_offset": 0.03}))
    return folder
