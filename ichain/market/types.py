"""The SDK's domain types: task status, tasks, workers, pools, task transactions, and address helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Union

from eth_utils import to_checksum_address

if TYPE_CHECKING:
    from ape.api.address import BaseAddress

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# The contract's money constants (basis points of BPS), mirrored so that amounts are known before sending.
BPS = 10_000
BURN_BPS = 100  # 1% of every paid amount is burned
COLLATERAL_BPS = 1000  # collateral = validator fee + 10% of the price
FAILURE_BPS = 1000  # a failing run pays the provider 10% of the price (less the burn)
MAX_REPORT = 1024  # a failure report (and a decline reason) is 1..MAX_REPORT bytes
MAX_OFFER = 2048  # an offer document is 1..MAX_OFFER bytes

# An account, contract or any other ape address object, or an address as text.
AddressLike = Union["BaseAddress", str]


class Status(IntEnum):
    """Task status, mirroring ``ITaskMarket.Status`` (protocol v2)."""

    None_ = 0
    Pending = 1
    Executing = 2
    Validating = 3
    Completed = 4
    Failed = 5
    Rejected = 6
    Rated = 7
    Cancelled = 8
    Expired = 9
    Declined = 10

    @property
    def is_open(self) -> bool:
        """True while the task holds escrow (Pending, Executing, Validating)."""
        return Status.Pending <= self <= Status.Validating

    @property
    def is_rateable(self) -> bool:
        """True when the requester may still rate the task (Completed or Failed, not yet rated)."""
        return self in (Status.Completed, Status.Failed)


Status.None_._name_ = "None"  # the contract's name; `None` itself is not a valid identifier here
OPEN_STATUSES = (Status.Pending, Status.Executing, Status.Validating)
# The states a task ends in; only Completed and Failed still take the requester's rating.
SETTLED_STATUSES = (
    Status.Completed, Status.Failed, Status.Rejected, Status.Rated, Status.Cancelled, Status.Expired, Status.Declined,
)


class Role(IntEnum):
    """The role a rating record is for, mirroring ``IRatings.Role``."""

    Provider = 0
    Validator = 1


# The Bayesian prior of every record, mirroring the Ratings contract: 3 stars weighing 0.01 ether.
PRIOR_SCORE_MILLI = 3000
PRIOR_WEIGHT_GWEI = 10_000_000


@dataclass(frozen=True)
class Record:
    """One role's rating record of a worker (``IRatings.Record``).

    Attributes:
        count: Ratings received.
        sum: Sum of the ratings (1..5 each).
        weight_gwei: Gwei paid over the rated tasks (what the ratings weigh).
        weighted_gwei: Sum of rating x gwei paid.
        average_milli: Plain average x 1000 (0 when never rated).
        score_milli: Bayesian value-weighted average x 1000 (the prior, 3000, when never rated).
    """

    count: int = 0
    sum: int = 0
    weight_gwei: int = 0
    weighted_gwei: int = 0
    average_milli: int = 0
    score_milli: int = PRIOR_SCORE_MILLI

    @property
    def score(self) -> float:
        """The ranking score in stars (3.0, the prior, when never rated)."""
        return self.score_milli / 1000

    @property
    def average(self) -> float | None:
        """The plain average in stars, or None when never rated (shown to users, never used to rank)."""
        return self.sum / self.count if self.count else None


def collateral_for(price: int, validator_fee: int) -> int:
    """The collateral a provider posts with its result: the validator fee plus 10% of the price."""
    return int(validator_fee) + int(price) * COLLATERAL_BPS // BPS


def burn_of(amount: int) -> int:
    """The part of a paid amount the market burns (1%)."""
    return int(amount) * BURN_BPS // BPS


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
        validator: Named validator (required since protocol v2).
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
    validator: str
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

    @property
    def collateral(self) -> int:
        """The collateral its provider posts with the result (see :func:`collateral_for`)."""
        return collateral_for(self.price, self.validator_fee)


@dataclass(frozen=True)
class Worker:
    """A worker (provider and validator) with its two rating records.

    Attributes:
        address: Worker address.
        worker_id: Permanent worker id (0 if never registered).
        enc_key: X25519 public key (32 bytes) locators are sealed to.
        price: Asking price in wei (for a run as a provider, for a verdict as a validator).
        registered: Currently registered.
        available: In the available pool.
        missed: Verdicts it let expire as a validator (never reset).
        provider_record: Its record as a provider.
        validator_record: Its record as a validator.
        offer_hash: keccak256 of its current offer document, or None when it never published one (or left since).
        offer_block: Block of the ``WorkerOffered`` event that holds that document (0 without an offer).
    """

    address: str
    worker_id: int
    enc_key: bytes
    price: int
    registered: bool
    available: bool
    missed: int = 0
    provider_record: Record = field(default_factory=Record)
    validator_record: Record = field(default_factory=Record)
    offer_hash: bytes | None = None
    offer_block: int = 0

    def record(self, role: Role) -> Record:
        """The record for ``role``."""
        return self.provider_record if role == Role.Provider else self.validator_record

    @property
    def rating_sum(self) -> int:
        """Sum of the ratings received as a provider."""
        return self.provider_record.sum

    @property
    def rating_count(self) -> int:
        """Number of ratings received as a provider."""
        return self.provider_record.count

    @property
    def average_rating(self) -> float | None:
        """Plain average rating as a provider, or None when never rated."""
        return self.provider_record.average

    @property
    def score(self) -> float:
        """Provider ranking score in stars (Bayesian, value-weighted)."""
        return self.provider_record.score

    @property
    def validator_score(self) -> float:
        """Validator ranking score in stars (Bayesian, value-weighted)."""
        return self.validator_record.score


@dataclass(frozen=True)
class Pools:
    """Open tasks by status and available workers."""

    pending: list[int] = field(default_factory=list)
    executing: list[int] = field(default_factory=list)
    validating: list[int] = field(default_factory=list)
    available: list[str] = field(default_factory=list)


class Windows(dict[str, int]):
    """The market's windows in seconds: ``validation_window``, ``min_timeout``, ``max_timeout``.

    A plain mapping; calling it returns itself, so ``market.windows`` and ``market.windows()`` both work.
    """

    def __call__(self) -> Windows:
        return self


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


def commitment_of(result_hash: bytes) -> bytes:
    """What the contract stores of a result hash (its ``resultOf`` view while the task is Validating): the first 24
    bytes, then 8 zero bytes. A verdict is checked against it; the full hash is in the events."""
    return bytes(result_hash)[:24] + bytes(8)
