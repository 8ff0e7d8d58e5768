"""The SDK's domain types: task status, tasks, workers, pools, task transactions, and address helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Union

from eth_utils import to_checksum_address

if TYPE_CHECKING:
    from ape.api.address import BaseAddress

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# An account, contract or any other ape address object, or an address as text.
AddressLike = Union["BaseAddress", str]


class Status(IntEnum):
    """Task status, mirroring ``ITaskMarket.Status``."""

    None_ = 0
    Pending = 1
    Executing = 2
    AwaitingValidator = 3
    Validating = 4
    Accepted = 5
    Rejected = 6
    Completed = 7
    Closed = 8
    Cancelled = 9
    Expired = 10

    @property
    def is_open(self) -> bool:
        """True while the task holds escrow (Pending..Accepted)."""
        return Status.Pending <= self <= Status.Accepted


Status.None_._name_ = "None"  # the contract's name; `None` itself is not a valid identifier here
OPEN_STATUSES = (Status.Pending, Status.Executing, Status.AwaitingValidator, Status.Validating, Status.Accepted)


def address_of(value: AddressLike) -> str:
    """The checksummed address of an account, a contract or an address given as text."""
    from ape.api.address import BaseAddress

    return to_checksum_address(value.address if isinstance(value, BaseAddress) else str(value))


def address_or_none(address: str) -> str | None:
    """The checksummed address, or None for the zero address (a party not named yet)."""
    if int(address, 16) == 0:
        return None
    return to_checksum_address(address)


@dataclass(frozen=True)
class Task:
    """A task as stored on chain (hashes and locators live only in events).

    Attributes:
        task_id: Task id (from 1).
        requester: Who posted it.
        status: Current status.
        deadline: Unix deadline of the current state.
        provider: Named provider, or None.
        validator: Named validator, or None.
        price: Wei for the provider.
        validator_fee: Wei for the validator.
        timeout: Execution timeout in seconds.
        pool_index: Position in the open-task set (meaningful while open).
    """

    task_id: int
    requester: str
    status: Status
    deadline: int
    provider: str | None
    validator: str | None
    price: int
    validator_fee: int
    timeout: int
    pool_index: int = 0

    @property
    def id(self) -> int:
        """Alias of :attr:`task_id`."""
        return self.task_id

    @property
    def deposit(self) -> int:
        """The escrow posted: price + validator fee."""
        return self.price + self.validator_fee

    @property
    def is_open(self) -> bool:
        """True while the task holds escrow."""
        return self.status.is_open


@dataclass(frozen=True)
class Worker:
    """A worker (provider or validator) with its rating statistics.

    Attributes:
        address: Worker address.
        worker_id: Permanent worker id (0 if never registered).
        enc_key: X25519 public key (32 bytes) locators are sealed to.
        price: Asking price in wei.
        registered: Currently registered.
        available: In the available pool.
        rating_sum: Sum of ratings received.
        rating_count: Number of ratings received.
    """

    address: str
    worker_id: int
    enc_key: bytes
    price: int
    registered: bool
    available: bool
    rating_sum: int = 0
    rating_count: int = 0

    @property
    def average_rating(self) -> float | None:
        """Average rating, or None when never rated."""
        return self.rating_sum / self.rating_count if self.rating_count else None


@dataclass(frozen=True)
class Pools:
    """Open tasks by status and available workers."""

    pending: list[int] = field(default_factory=list)
    executing: list[int] = field(default_factory=list)
    awaiting_validator: list[int] = field(default_factory=list)
    validating: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    available: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskTransaction:
    """A transaction that moved a task, and what it cost.

    Attributes:
        transaction_hash: 0x hex.
        sender: Who sent (and paid for) it.
        gas_used: Gas used, from its receipt.
        events: Names of the task's events it emitted, in order.
    """

    transaction_hash: str
    sender: str
    gas_used: int
    events: tuple[str, ...]


def as_bytes(value: bytes | bytearray | str) -> bytes:
    """Bytes from bytes or hex text (with or without 0x), as nodes and users give them.

    Raises:
        ValueError: The text is not hex.
    """
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)
