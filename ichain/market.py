"""Python SDK over the TaskMarket and Ratings contracts (ApePay style).

A :class:`Market` wraps both contracts. Every state-changing method reads the chain first and raises a typed
:class:`MarketError` (one line, a subclass of :class:`ichain.errors.IChainError`) *before* sending a transaction
that would revert; if a transaction reverts anyway (a race, a clock edge), the contract's custom error is turned
into the same typed error. Reads return domain objects (:class:`Task`, :class:`Worker`, :class:`Pools`) and
:meth:`Market.events` returns typed event objects decoded from one ``eth_getLogs`` call over a block range.

Usage::

    market = Market.from_deployment()
    market.register(keypair.public_bytes, price=10**15, sender=provider)
    task = market.post(task_hash, price=10**16, validator_fee=10**15, provider=p, validator=v, sender=requester)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields
from functools import lru_cache
from enum import IntEnum
from typing import Any, Callable, ClassVar, Iterable, Sequence

from eth_utils import keccak, to_checksum_address

from ichain.errors import IChainError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
UINT96_MAX = 2**96 - 1
PAGE = 500  # positions scanned per view call when walking the pools
_BATCH = 100  # calls per JSON-RPC batch (public nodes cap batch sizes)


# ====================================================================== errors


# Gas limit for expire(): its most expensive branch costs about 70k (bench/results/gas.json).
EXPIRE_GAS = 150_000

class MarketError(IChainError):
    """A TaskMarket operation that cannot succeed (raised before sending, or translated from a revert).

    Attributes:
        transaction_hash: Hash of the signed transaction that failed, when one was handed to the node (it may
            have been mined and reverted, or refused by the node); None when nothing was signed (a pre-check or
            the gas estimate failed), so no nonce was used.
    """

    transaction_hash: str | None = None


class InvalidInput(MarketError):
    """An argument is malformed (wrong length, out of range, zero hash)."""


class TaskNotFound(MarketError):
    """No task with that id."""


class NotRequester(MarketError):
    """Only the task's requester may do this."""


class NotProvider(MarketError):
    """Only the task's provider may do this."""


class NotValidator(MarketError):
    """Only the task's validator may do this."""


class WrongState(MarketError):
    """The task is not in a state that allows this."""


class DeadlinePassed(MarketError):
    """The deadline of the task's current state has passed."""


class DeadlineNotReached(MarketError):
    """The deadline of the task's current state has not passed yet."""


class NotAWorker(MarketError):
    """The account is not a registered worker."""


class AlreadyRegistered(MarketError):
    """The account is already a registered worker."""


class WorkerUnavailable(MarketError):
    """The worker is registered but not available."""


class PriceTooLow(MarketError):
    """The offered price is below the provider's asking price."""


class InsufficientDeposit(MarketError):
    """The ether sent is not price + validator fee (or the sender cannot afford it)."""


WrongDeposit = InsufficientDeposit


class TimeoutOutOfBounds(MarketError):
    """The per-task timeout is outside the market's bounds."""


class InvalidProvider(MarketError):
    """The provider cannot be the requester or the validator."""


class InvalidValidator(MarketError):
    """The validator cannot be the requester, the provider or the current validator."""


class WrongResult(MarketError):
    """The result hash is not the task's committed result."""


class InvalidRating(MarketError):
    """Ratings are 1..5."""


class NothingToWithdraw(MarketError):
    """The account has no credit."""


class TransferFailed(MarketError):
    """The recipient refused the ether (the credit is kept)."""


class TransactionFailed(MarketError):
    """A transaction failed for a reason the SDK could not classify."""


_ERRORS_BY_NAME: dict[str, type[MarketError]] = {
    "ZeroKey": InvalidInput,
    "ZeroTaskHash": InvalidInput,
    "ZeroResultHash": InvalidInput,
    "InvalidWindows": InvalidInput,
    "TaskNotFound": TaskNotFound,
    "NotRequester": NotRequester,
    "NotProvider": NotProvider,
    "NotValidator": NotValidator,
    "WrongState": WrongState,
    "DeadlinePassed": DeadlinePassed,
    "DeadlineNotReached": DeadlineNotReached,
    "NotAWorker": NotAWorker,
    "AlreadyRegistered": AlreadyRegistered,
    "WorkerUnavailable": WorkerUnavailable,
    "PriceTooLow": PriceTooLow,
    "WrongDeposit": InsufficientDeposit,
    "TimeoutOutOfBounds": TimeoutOutOfBounds,
    "InvalidProvider": InvalidProvider,
    "InvalidValidator": InvalidValidator,
    "WrongResult": WrongResult,
    "InvalidRating": InvalidRating,
    "NothingToWithdraw": NothingToWithdraw,
    "TransferFailed": TransferFailed,
    "Reentrancy": TransactionFailed,
    "NotMarket": TransactionFailed,
}


def error_from_revert(err: Exception) -> MarketError:
    """Turn an ape revert into the matching typed :class:`MarketError`.

    Args:
        err: The exception ape raised (a ``CustomError`` for the contracts' custom errors).

    Returns:
        The typed error, with a one-line message.
    """
    name = getattr(err, "name", None) if hasattr(err, "abi") else None
    if name:
        short = name.split("__", 1)[-1]
        inputs = getattr(err, "inputs", {}) or {}
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in inputs.items())
        cls = _ERRORS_BY_NAME.get(short, TransactionFailed)
        return cls(f"transaction reverted: {short}" + (f" ({detail})" if detail else ""))
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return TransactionFailed(f"transaction failed: {text}")


def _signed_hash(err: Exception) -> str | None:
    """The hash of the transaction behind ape's ``err`` if it was signed (so it reached the node), else None."""
    from ape.api import ReceiptAPI, TransactionAPI
    from ape.exceptions import TransactionError

    txn = err.txn if isinstance(err, TransactionError) else None
    if isinstance(txn, ReceiptAPI):
        return str(txn.txn_hash)
    if isinstance(txn, TransactionAPI) and txn.signature is not None:
        return "0x" + bytes(txn.txn_hash).hex()
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool) and hasattr(value, "__class__"):
        return str(int(value))
    return str(value)


# ====================================================================== domain objects


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


def _addr(value: Any) -> str | None:
    """Checksummed address, or None for the zero address."""
    text = str(getattr(value, "address", value))
    if int(text, 16) == 0:
        return None
    return to_checksum_address(text)


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


# ====================================================================== events


@dataclass(frozen=True, kw_only=True)
class MarketEvent:
    """Base of every decoded event: where it happened.

    Attributes:
        block_number: Block of the log.
        log_index: Index of the log in its block.
        transaction_hash: Transaction that emitted it (0x hex).
        contract_address: Emitting contract.
    """

    event_name: ClassVar[str] = ""
    block_number: int
    log_index: int
    transaction_hash: str
    contract_address: str

    @property
    def name(self) -> str:
        """The event's name (``TaskPosted``...)."""
        return self.event_name


@dataclass(frozen=True, kw_only=True)
class WorkerRegistered(MarketEvent):
    event_name: ClassVar[str] = "WorkerRegistered"
    worker: str
    enc_key: bytes
    price: int
    available: bool


@dataclass(frozen=True, kw_only=True)
class WorkerUpdated(MarketEvent):
    event_name: ClassVar[str] = "WorkerUpdated"
    worker: str
    enc_key: bytes
    price: int
    available: bool


@dataclass(frozen=True, kw_only=True)
class WorkerLeft(MarketEvent):
    event_name: ClassVar[str] = "WorkerLeft"
    worker: str


@dataclass(frozen=True, kw_only=True)
class TaskPosted(MarketEvent):
    event_name: ClassVar[str] = "TaskPosted"
    task_id: int
    provider: str | None
    validator: str | None
    requester: str
    task_hash: bytes
    price: int
    validator_fee: int
    deadline: int
    provider_locator: bytes
    validator_locator: bytes


@dataclass(frozen=True, kw_only=True)
class ProviderAssigned(MarketEvent):
    event_name: ClassVar[str] = "ProviderAssigned"
    task_id: int
    provider: str
    requester: str
    price: int
    deadline: int
    locator: bytes


@dataclass(frozen=True, kw_only=True)
class ValidatorAssigned(MarketEvent):
    event_name: ClassVar[str] = "ValidatorAssigned"
    task_id: int
    validator: str
    requester: str
    result_hash: bytes
    validator_fee: int
    deadline: int
    locator: bytes


@dataclass(frozen=True, kw_only=True)
class ResultSubmitted(MarketEvent):
    event_name: ClassVar[str] = "ResultSubmitted"
    task_id: int
    provider: str
    validator: str | None
    requester: str
    result_hash: bytes
    deadline: int
    requester_locator: bytes
    validator_locator: bytes


@dataclass(frozen=True, kw_only=True)
class VerdictSubmitted(MarketEvent):
    event_name: ClassVar[str] = "VerdictSubmitted"
    task_id: int
    validator: str
    requester: str
    result_hash: bytes
    accepted: bool
    validator_fee: int
    deadline: int


@dataclass(frozen=True, kw_only=True)
class TaskFinalized(MarketEvent):
    event_name: ClassVar[str] = "TaskFinalized"
    task_id: int
    provider: str
    requester: str
    rating: int
    paid: int


@dataclass(frozen=True, kw_only=True)
class TaskCancelled(MarketEvent):
    event_name: ClassVar[str] = "TaskCancelled"
    task_id: int
    requester: str
    refund: int


@dataclass(frozen=True, kw_only=True)
class TaskExpired(MarketEvent):
    event_name: ClassVar[str] = "TaskExpired"
    task_id: int
    requester: str
    provider: str | None
    previous_status: Status
    refund: int
    payout: int


@dataclass(frozen=True, kw_only=True)
class Withdrawn(MarketEvent):
    event_name: ClassVar[str] = "Withdrawn"
    account: str
    to: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class Rated(MarketEvent):
    event_name: ClassVar[str] = "Rated"
    worker: str
    task_id: int
    rater: str
    rating: int


@dataclass(frozen=True, kw_only=True)
class WorkerTracked(MarketEvent):
    event_name: ClassVar[str] = "WorkerTracked"
    worker: str


EVENT_TYPES: dict[str, type[MarketEvent]] = {
    cls.event_name: cls
    for cls in (
        WorkerRegistered, WorkerUpdated, WorkerLeft, TaskPosted, ProviderAssigned, ValidatorAssigned,
        ResultSubmitted, VerdictSubmitted, TaskFinalized, TaskCancelled, TaskExpired, Withdrawn, Rated,
        WorkerTracked,
    )
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _EventDecoder:
    """Decodes raw logs of known events into :class:`MarketEvent` objects (word by word, no per-log lookups)."""

    def __init__(self, abis: Iterable[Any]):
        self._by_topic: dict[bytes, tuple[type[MarketEvent], list[tuple[str, str, bool]]]] = {}
        for abi in abis:
            cls = EVENT_TYPES.get(abi.name)
            if cls is None:
                continue
            inputs = [(_snake(i.name), i.canonical_type, bool(i.indexed)) for i in abi.inputs]
            for _, typ, indexed in inputs:
                if not (typ in _WORD_TYPES or typ.startswith("uint")) or (indexed and typ == "bytes"):
                    raise MarketError(f"SDK cannot decode {typ} in event {abi.name} - update ichain/market.py")
            own = {f.name for f in fields(cls)} - {f.name for f in fields(MarketEvent)}
            if own != {n for n, _, _ in inputs}:  # the ABI changed: fail loudly, not silently mis-decode
                raise MarketError(f"SDK event {abi.name} does not match the contract ABI - update ichain/market.py")
            self._by_topic[keccak(text=abi.selector)] = (cls, inputs)

    @property
    def topics(self) -> list[str]:
        return ["0x" + t.hex() for t in self._by_topic]

    def decode(self, log: dict) -> MarketEvent | None:
        topics = [_as_bytes(t) for t in log["topics"]]
        entry = self._by_topic.get(topics[0]) if topics else None
        if entry is None:
            return None
        cls, inputs = entry
        data = _as_bytes(log["data"])
        values: dict[str, Any] = {}
        topic_index, head = 1, 0
        for name, typ, indexed in inputs:
            if indexed:
                raw = _word(topics[topic_index], typ)
                topic_index += 1
            elif typ == "bytes":
                offset = int.from_bytes(data[head:head + 32], "big")
                length = int.from_bytes(data[offset:offset + 32], "big")
                raw = data[offset + 32:offset + 32 + length]
                head += 32
            else:
                raw = _word(data[head:head + 32], typ)
                head += 32
            values[name] = _convert(name, typ, raw)
        return cls(
            block_number=_as_int(log["blockNumber"]),
            log_index=_as_int(log["logIndex"]),
            transaction_hash="0x" + _as_bytes(log["transactionHash"]).hex(),
            contract_address=_checksum(log["address"] if isinstance(log["address"], str) else str(log["address"])),
            **values,
        )


_WORD_TYPES = ("address", "bool", "bytes32", "bytes")


def _word(word: bytes, typ: str) -> Any:
    """One ABI head word (or topic) of a static type; hand-rolled because eth_abi per call is ~100x slower."""
    if typ == "address":
        return "0x" + word[12:].hex()
    if typ == "bool":
        return word[-1] == 1
    if typ == "bytes32":
        return bytes(word)
    return int.from_bytes(word, "big")  # uintN


@lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    return to_checksum_address(address)


def _convert(name: str, typ: str, raw: Any) -> Any:
    if typ == "address":
        if int(raw, 16) == 0 and name in ("provider", "validator"):
            return None  # parties that may be unnamed are None rather than the zero address
        return _checksum(raw)
    if name == "previous_status":
        return Status(raw)
    return raw


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _as_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes32(value: bytes | str, what: str) -> bytes:
    try:
        raw = _as_bytes(value)
    except ValueError:
        raise InvalidInput(f"{what} must be 32 bytes (hex or bytes)") from None
    if len(raw) != 32:
        raise InvalidInput(f"{what} must be 32 bytes, got {len(raw)}")
    if raw == bytes(32):
        raise InvalidInput(f"{what} must not be zero")
    return raw


def _amount(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT96_MAX:
        raise InvalidInput(f"{what} must be an integer number of wei in [0, 2**96)")
    return value


def _target(name: str) -> tuple[str, str]:
    """``"getTask"`` -> ``("market", "getTask")``; ``"ratings.stats"`` -> ``("ratings", "stats")``."""
    contract, _, fn = name.rpartition(".")
    return contract or "market", fn


def _sender_address(sender: Any) -> str:
    return to_checksum_address(str(getattr(sender, "address", sender)))


# ====================================================================== the SDK


class Market:
    """Both iChain contracts behind one object with typed pre-checks.

    Args:
        address: TaskMarket address.
        start_block: First block worth scanning for events (the deployment block), used by lookups.

    Attributes:
        contract: The ape TaskMarket contract instance.
        ratings: The ape Ratings contract instance.
        address: TaskMarket address (checksummed).
    """

    def __init__(self, address: str, *, start_block: int = 0):
        from ape import project
        from ape.exceptions import ApeException

        try:
            self.contract = project.TaskMarket.at(address)
            self.ratings = project.Ratings.at(self.contract.ratings())
        except (ApeException, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MarketError(f"no TaskMarket at {address} on this network: {first}") from None
        self.address = str(self.contract.address)
        self.start_block = int(start_block)
        self._decoder = _EventDecoder(
            list(self.contract.contract_type.events) + list(self.ratings.contract_type.events)
        )
        self._windows: dict[str, int] | None = None
        self._w3: tuple[Any, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def at(cls, address: str, *, start_block: int = 0) -> Market:
        """The market at ``address`` on the connected network."""
        return cls(address, start_block=start_block)

    @classmethod
    def from_deployment(cls, chain_id: int | None = None, path: Any = None) -> Market:
        """The market recorded in :mod:`ichain.deployments` for the connected network.

        Args:
            chain_id: Look up this chain id instead of the connected one.
            path: Registry file instead of the default one.

        Raises:
            ichain.deployments.DeploymentError: Nothing recorded, or no code at the recorded address.
        """
        from ape import chain

        from ichain import deployments

        cid = int(chain_id) if chain_id is not None else deployments.connected_chain_id()
        found = deployments.find(cid, path)
        if not chain.provider.get_code(found.market):
            raise deployments.DeploymentError(
                f"no contract code at the recorded TaskMarket {found.market} on chain id {cid} "
                "(a restarted local chain?) - deploy again with `ape run deploy`"
            )
        return cls(found.market, start_block=found.block)

    @classmethod
    def deploy(cls, sender: Any, *, save: bool = False, **kwargs: Any) -> Market:
        """Deploy a new market (see :func:`ichain.deployments.deploy`) and wrap it."""
        from ichain import deployments

        found = deployments.deploy(sender, save=save, **kwargs)
        return cls(found.market, start_block=found.block)

    # ------------------------------------------------------------------ parameters
    @property
    def windows(self) -> dict[str, int]:
        """The market's immutable windows (seconds): review, validation, min/max timeout."""
        if self._windows is None:
            c = self.contract
            self._windows = {
                "review_window": int(c.reviewWindow()),
                "validation_window": int(c.validationWindow()),
                "min_timeout": int(c.minTimeout()),
                "max_timeout": int(c.maxTimeout()),
            }
        return self._windows

    @property
    def default_timeout(self) -> int:
        """Timeout used by :meth:`post` when none is given: one hour, clamped to the market's bounds."""
        w = self.windows
        return min(max(3600, w["min_timeout"]), w["max_timeout"])

    # ------------------------------------------------------------------ reads
    def task(self, task_id: int) -> Task:
        """One task.

        Raises:
            TaskNotFound: No such task.
        """
        return self.tasks([task_id])[0]

    def tasks(self, task_ids: Iterable[int]) -> list[Task]:
        """Several tasks, read in one round trip (see :meth:`_read_many`).

        Raises:
            TaskNotFound: One of them does not exist.
        """
        ids = [int(i) for i in task_ids]
        return [self._task_of(i, raw) for i, raw in zip(ids, self._read_many([("getTask", (i,)) for i in ids]))]

    @staticmethod
    def _task_of(task_id: int, raw: Any) -> Task:
        status = Status(int(raw.status))
        if status == Status.None_:
            raise TaskNotFound(f"task {task_id} does not exist")
        return Task(
            task_id=task_id,
            requester=to_checksum_address(raw.requester),
            status=status,
            deadline=int(raw.deadline),
            provider=_addr(raw.provider),
            validator=_addr(raw.validator),
            price=int(raw.price),
            validator_fee=int(raw.validatorFee),
            timeout=int(raw.timeout),
            pool_index=int(raw.poolIndex),
        )

    def worker(self, address: Any) -> Worker:
        """One worker with its rating statistics (``registered`` False for unknown accounts)."""
        return self.workers([address])[0]

    def workers(self, addresses: Iterable[Any]) -> list[Worker]:
        """Several workers with their rating statistics, read in one round trip."""
        addrs = [_sender_address(a) for a in addresses]
        raws = self._read_many([call for a in addrs for call in (("getWorker", (a,)), ("ratings.stats", (a,)))])
        return [self._worker_of(a, raws[2 * k], raws[2 * k + 1]) for k, a in enumerate(addrs)]

    @staticmethod
    def _worker_of(address: str, raw: Any, stats: Sequence[Any]) -> Worker:
        total, count, _ = stats
        return Worker(
            address=address,
            worker_id=int(raw.id),
            enc_key=_as_bytes(raw.encKey),
            price=int(raw.price),
            registered=bool(raw.registered),
            available=bool(raw.available),
            rating_sum=int(total),
            rating_count=int(count),
        )

    def credit(self, address: Any) -> int:
        """Withdrawable wei of ``address``."""
        return int(self.contract.creditOf(_sender_address(address)))

    def last_task_id(self) -> int:
        """Id of the last posted task (0 before any)."""
        return int(self.contract.lastTaskId())

    def available_workers(self) -> list[str]:
        """Addresses of all available workers (paginated reads)."""
        total, first = self._read_many([("availableWorkerCount", ()), ("availableWorkers", (0, PAGE))])
        return self._rest_of_workers(int(total), list(first))

    def _rest_of_workers(self, total: int, first: list[Any]) -> list[str]:
        out = [to_checksum_address(a) for a in first]
        for cursor in range(PAGE, total, PAGE):
            out.extend(to_checksum_address(a) for a in self.contract.availableWorkers(cursor, PAGE))
        return out

    def tasks_in(self, status: Status) -> list[int]:
        """Ids of the open tasks in ``status`` (paginated scans of the open-task set)."""
        total, first = self._read_many([("openTaskCount", ()), ("tasksInStatus", (int(status), 0, PAGE))])
        return self._rest_of_scan(status, int(total), first)

    def _rest_of_scan(self, status: Status, total: int, page: Any) -> list[int]:
        ids, cursor = page
        out = [int(i) for i in ids]
        cursor = int(cursor)
        while cursor < total:
            ids, cursor = self.contract.tasksInStatus(int(status), cursor, PAGE)
            out.extend(int(i) for i in ids)
            cursor = int(cursor)
        return out

    def pools(self) -> Pools:
        """Open tasks by status and the available workers (first pages of every pool in one round trip)."""
        pools = {"pending": Status.Pending, "executing": Status.Executing,
                 "awaiting_validator": Status.AwaitingValidator, "validating": Status.Validating,
                 "accepted": Status.Accepted}
        total, workers_total, workers, *pages = self._read_many(
            [("openTaskCount", ()), ("availableWorkerCount", ()), ("availableWorkers", (0, PAGE))]
            + [("tasksInStatus", (int(s), 0, PAGE)) for s in pools.values()]
        )
        ids = {name: self._rest_of_scan(s, int(total), page) for (name, s), page in zip(pools.items(), pages)}
        return Pools(**ids, available=self._rest_of_workers(int(workers_total), list(workers)))

    def providers(self) -> list[Worker]:
        """Available workers ranked by average rating (best first; unrated last), then price, then address."""
        return sorted(self.workers(self.available_workers()), key=rank_key)

    def _read_many(self, calls: Sequence[tuple[str, tuple]]) -> list[Any]:
        """View calls ``(function, args)`` (``"ratings.<fn>"`` for Ratings) in JSON-RPC batches.

        Why: ape's call path costs several RPC requests per call, so a pool viewer listing 25 tasks took
        ~0.35 s per refresh; one batch is one round trip. A node that refuses batches (or a batch that
        fails for any reason) gets the calls one by one through ape, with ape's usual errors.
        """
        try:
            w3, contracts = self._web3_contracts()
            out: list[Any] = []
            for start in range(0, len(calls), _BATCH):
                with w3.batch_requests() as batch:
                    for name, args in calls[start : start + _BATCH]:
                        contract, fn = _target(name)
                        batch.add(getattr(contracts[contract].functions, fn)(*args))
                    out.extend(batch.execute())
            if len(out) == len(calls) and not any(isinstance(r, dict) and "error" in r for r in out):
                return out
        except Exception:  # the one-by-one path below reports any real problem
            pass
        return [self._call_one(name, args) for name, args in calls]

    def _call_one(self, name: str, args: tuple) -> Any:
        contract, fn = _target(name)
        return getattr(self.ratings if contract == "ratings" else self.contract, fn)(*args)

    def _web3_contracts(self) -> tuple[Any, dict[str, Any]]:
        """web3 contract objects over ape's own connection (rebuilt when ape reconnects)."""
        from ape import chain

        w3 = chain.provider.web3
        if self._w3 is None or self._w3[0] is not w3:
            def make(instance: Any) -> Any:
                abi = [item.model_dump(mode="json", by_alias=True) for item in instance.contract_type.abi]
                # decode_tuples: struct outputs come back with field names, as ape returns them
                return w3.eth.contract(address=str(instance.address), abi=abi, decode_tuples=True)

            self._w3 = (w3, {"market": make(self.contract), "ratings": make(self.ratings)})
        return self._w3

    def events(self, start_block: int, stop_block: int | None = None) -> list[MarketEvent]:
        """Decoded events of both contracts in ``[start_block, stop_block]``, in chain order.

        One ``eth_getLogs`` call for both addresses; the provider daemon polls this every ~100 ms.

        Args:
            start_block: First block (inclusive).
            stop_block: Last block (inclusive); default the head.
        """
        from ape import chain

        from ape.exceptions import ProviderError

        if stop_block is None:
            stop_block = int(chain.blocks.head.number)
        if stop_block < start_block:
            return []
        try:
            logs = self._get_logs(start_block, stop_block)
        except ProviderError:
            # a range past the head (some nodes refuse it): clamp once and retry
            head = int(chain.blocks.head.number)
            if start_block > head:
                return []
            logs = self._get_logs(start_block, min(stop_block, head))
        out = [e for e in (self._decoder.decode(dict(log)) for log in logs) if e is not None]
        out.sort(key=lambda e: (e.block_number, e.log_index))
        return out

    def _get_logs(self, start_block: int, stop_block: int) -> list:
        from ape import chain

        return chain.provider.make_request(
            "eth_getLogs",
            [{"address": [self.address, str(self.ratings.address)], "fromBlock": hex(int(start_block)),
              "toBlock": hex(int(stop_block))}],
        )

    def task_transactions(self, task_id: int, start_block: int | None = None) -> list[TaskTransaction]:
        """The transactions that moved ``task_id`` (found by its events), in chain order, with their gas.

        Withdrawals are not among them: they move an account's credit, not a task.

        Args:
            task_id: The task.
            start_block: First block to search (default: the market's deployment block).
        """
        from ape import chain

        found: dict[str, list[str]] = {}
        for event in self.events(self.start_block if start_block is None else start_block):
            if getattr(event, "task_id", None) == int(task_id):
                found.setdefault(event.transaction_hash, []).append(event.name)
        out = []
        for tx_hash, names in found.items():
            receipt = chain.provider.web3.eth.get_transaction_receipt(tx_hash)
            out.append(TaskTransaction(tx_hash, to_checksum_address(receipt["from"]), int(receipt["gasUsed"]),
                                       tuple(names)))
        return out

    def result_hash(self, task_id: int) -> bytes:
        """The result hash committed for ``task_id`` (the contract's per-task ``resultOf`` view).

        Raises:
            WrongState: No result committed yet.
        """
        rh = self.result_of(task_id)
        if rh is None:
            raise WrongState(f"task {task_id} has no committed result")
        return rh

    def now(self) -> int:
        """The timestamp the next block will have: the clock the contract judges deadlines by.

        Not this machine's clock: a dev chain's clock runs ahead of it after time travel and behind it after
        snapshot reverts (anvil rewinds its clock by the time spent between a snapshot and its revert).
        """
        from ape import chain

        web3 = chain.provider.web3
        latest = web3.eth.get_block("latest")
        try:
            pending = web3.eth.get_block("pending")
        except Exception:  # a node without a pending block
            pending = None
        if pending and int(pending.get("number") or 0) > int(latest["number"]):
            return int(pending["timestamp"])
        # The node answered "pending" with its latest block: the next one comes no earlier than now.
        return max(int(latest["timestamp"]), int(time.time()))

    # ------------------------------------------------------------------ helpers

    def _own_task(self, task_id: int, sender: Any) -> Task:
        task = self.task(task_id)
        if task.requester != _sender_address(sender):
            raise NotRequester(f"only the requester {task.requester} can do this on task {task_id}")
        return task

    @staticmethod
    def _expect(task: Task, *allowed: Status) -> None:
        if task.status not in allowed:
            names = " or ".join(s.name for s in allowed)
            raise WrongState(f"task {task.task_id} is {task.status.name}, not {names}")

    def _check_worker_for(self, address: Any, role: str) -> Worker:
        worker = self.worker(address)
        if not worker.registered:
            raise NotAWorker(f"{role} {worker.address} is not a registered worker")
        if not worker.available:
            raise WorkerUnavailable(f"{role} {worker.address} is not available")
        return worker

    def _send(
        self, method: str, *args: Any, sender: Any, on_receipt: Callable[[Any], None] | None = None, **tx: Any
    ) -> Any:
        """Send one contract transaction; ``on_receipt`` (a keyword every sending method passes on) gets its
        receipt, for callers that journal what they sent (the methods return domain objects, not receipts)."""
        from ape.exceptions import ApeException

        try:
            receipt = getattr(self.contract, method)(*args, sender=sender, **tx)
        except ApeException as err:
            typed = error_from_revert(err)
            typed.transaction_hash = _signed_hash(err)
            raise typed from None
        if on_receipt is not None:
            on_receipt(receipt)
        return receipt

    def _decoded(self, receipt: Any, cls: type[MarketEvent]) -> MarketEvent:
        for log in receipt.logs:
            event = self._decoder.decode(dict(log))
            if isinstance(event, cls):
                return event
        raise TransactionFailed(f"transaction {receipt.txn_hash} emitted no {cls.event_name}")

    # ------------------------------------------------------------------ workers
    def register(self, enc_key: bytes, price: int, *, sender: Any, available: bool = True, **tx: Any) -> Worker:
        """Register ``sender`` as a worker.

        Raises:
            InvalidInput: Key not 32 non-zero bytes, or price out of range.
            AlreadyRegistered: Already registered.
        """
        key = _bytes32(enc_key, "encryption key")
        _amount(price, "price")
        if self.worker(sender).registered:
            raise AlreadyRegistered(f"{_sender_address(sender)} is already a registered worker")
        self._send("register", key, price, bool(available), sender=sender, **tx)
        return self.worker(sender)

    def update(self, enc_key: bytes, price: int, *, sender: Any, available: bool = True, **tx: Any) -> Worker:
        """Change ``sender``'s key, price or availability.

        Raises:
            NotAWorker: Not registered.
        """
        key = _bytes32(enc_key, "encryption key")
        _amount(price, "price")
        if not self.worker(sender).registered:
            raise NotAWorker(f"{_sender_address(sender)} is not a registered worker")
        self._send("update", key, price, bool(available), sender=sender, **tx)
        return self.worker(sender)

    def leave(self, *, sender: Any, **tx: Any) -> None:
        """Leave the registry (open tasks carry on; credits stay withdrawable).

        Raises:
            NotAWorker: Not registered.
        """
        if not self.worker(sender).registered:
            raise NotAWorker(f"{_sender_address(sender)} is not a registered worker")
        self._send("leave", sender=sender, **tx)

    # ------------------------------------------------------------------ task lifecycle
    def post(
        self,
        task_hash: bytes,
        *,
        price: int,
        validator_fee: int,
        sender: Any,
        provider: Any = None,
        validator: Any = None,
        provider_locator: bytes = b"",
        validator_locator: bytes = b"",
        timeout: int | None = None,
        **tx: Any,
    ) -> Task:
        """Post a task with its escrow (price + validator fee is sent with the transaction).

        Raises:
            InvalidInput, TimeoutOutOfBounds, InvalidProvider, InvalidValidator, NotAWorker, WorkerUnavailable,
            PriceTooLow, InsufficientDeposit: before sending.
        """
        task_hash = _bytes32(task_hash, "task hash")
        _amount(price, "price")
        _amount(validator_fee, "validator fee")
        me = _sender_address(sender)
        timeout = self.default_timeout if timeout is None else int(timeout)
        w = self.windows
        if not w["min_timeout"] <= timeout <= w["max_timeout"]:
            raise TimeoutOutOfBounds(f"timeout {timeout}s is outside [{w['min_timeout']}, {w['max_timeout']}]s")
        provider_addr = _sender_address(provider) if provider else None
        validator_addr = _sender_address(validator) if validator else None
        if validator_addr:
            if validator_addr == me:
                raise InvalidValidator("the requester cannot be the validator")
            self._check_worker_for(validator_addr, "validator")
        if provider_addr:
            if provider_addr == me:
                raise InvalidProvider("the requester cannot be the provider")
            if provider_addr == validator_addr:
                raise InvalidProvider("the provider cannot be the validator")
            worker = self._check_worker_for(provider_addr, "provider")
            if worker.price > price:
                raise PriceTooLow(f"provider {provider_addr} asks {worker.price} wei, offered {price}")
        deposit = price + validator_fee
        balance = int(getattr(sender, "balance", deposit))
        if balance < deposit:
            raise InsufficientDeposit(f"{me} has {balance} wei, the deposit is {deposit} wei")
        terms = (provider_addr or ZERO_ADDRESS, validator_addr or ZERO_ADDRESS, price, validator_fee, timeout)
        receipt = self._send(
            "post", task_hash, terms, bytes(provider_locator), bytes(validator_locator),
            sender=sender, value=deposit, **tx,
        )
        posted = self._decoded(receipt, TaskPosted)
        return self.task(posted.task_id)

    def assign_provider(self, task_id: int, provider: Any, locator: bytes, *, sender: Any, **tx: Any) -> Task:
        """Name the provider of a pending task.

        Raises:
            NotRequester, WrongState, InvalidProvider, NotAWorker, WorkerUnavailable, PriceTooLow: before sending.
        """
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Pending)
        addr = _sender_address(provider)
        if addr == task.requester or addr == task.validator:
            raise InvalidProvider(f"provider {addr} cannot be the requester or the validator")
        worker = self._check_worker_for(addr, "provider")
        if worker.price > task.price:
            raise PriceTooLow(f"provider {addr} asks {worker.price} wei, the task pays {task.price}")
        self._send("assignProvider", int(task_id), addr, bytes(locator), sender=sender, **tx)
        return self.task(task_id)

    def assign_validator(
        self, task_id: int, validator: Any, locator: bytes, *, sender: Any, result_hash: bytes | None = None,
        **tx: Any,
    ) -> Task:
        """Name the validator after the result, or replace a silent one after its deadline.

        Args:
            result_hash: The committed result (looked up with the per-task ``resultOf`` view if omitted).

        Raises:
            NotRequester, WrongState, DeadlinePassed, DeadlineNotReached, InvalidValidator, NotAWorker,
            WorkerUnavailable, WrongResult: before sending.
        """
        task = self._own_task(task_id, sender)
        self._expect(task, Status.AwaitingValidator, Status.Validating)
        now = self.now()
        if task.status == Status.AwaitingValidator and now > task.deadline:
            raise DeadlinePassed(f"task {task_id}: the review window closed at {task.deadline}; anyone can expire it")
        if task.status == Status.Validating and now <= task.deadline:
            raise DeadlineNotReached(
                f"task {task_id}: validator {task.validator} has until {task.deadline} for its verdict"
            )
        addr = _sender_address(validator)
        if addr in (task.requester, task.provider, task.validator):
            raise InvalidValidator(f"validator {addr} cannot be the requester, the provider or the current validator")
        self._check_worker_for(addr, "validator")
        rh = self.result_hash(task_id) if result_hash is None else _bytes32(result_hash, "result hash")
        self._send("assignValidator", int(task_id), addr, rh, bytes(locator), sender=sender, **tx)
        return self.task(task_id)

    def submit_result(
        self, task_id: int, result_hash: bytes, requester_locator: bytes, validator_locator: bytes = b"", *,
        sender: Any, **tx: Any,
    ) -> Task:
        """Commit the result of an executing task (provider only).

        Raises:
            InvalidInput, NotProvider, WrongState, DeadlinePassed: before sending.
        """
        rh = _bytes32(result_hash, "result hash")
        task = self.task(task_id)
        if task.provider != _sender_address(sender):
            raise NotProvider(f"only the provider {task.provider} can submit the result of task {task_id}")
        self._expect(task, Status.Executing)
        if self.now() > task.deadline:
            raise DeadlinePassed(f"task {task_id}: the result was due by {task.deadline}")
        self._send("submitResult", int(task_id), rh, bytes(requester_locator), bytes(validator_locator),
                   sender=sender, **tx)
        return self.task(task_id)

    def result_of(self, task_id: int) -> bytes | None:
        """The result hash committed for ``task_id`` (None while none is committed); one view call."""
        rh = bytes(self.contract.resultOf(int(task_id)))
        return None if rh == bytes(32) else rh

    def submit_verdict(self, task_id: int, result_hash: bytes, accept: bool, *, sender: Any, **tx: Any) -> Task:
        """Judge the committed result (validator only).

        Raises:
            NotValidator, WrongState, DeadlinePassed, WrongResult: before sending.
        """
        rh = _bytes32(result_hash, "result hash")
        task = self.task(task_id)
        if task.validator != _sender_address(sender):
            raise NotValidator(f"only the validator {task.validator} can judge task {task_id}")
        self._expect(task, Status.Validating)
        if self.now() > task.deadline:
            raise DeadlinePassed(f"task {task_id}: the verdict was due by {task.deadline}")
        if self.result_of(task_id) != rh:
            raise WrongResult(f"0x{rh.hex()} is not the result committed for task {task_id}")
        self._send("submitVerdict", int(task_id), rh, bool(accept), sender=sender, **tx)
        return self.task(task_id)

    def finalize(self, task_id: int, rating: int, *, sender: Any, **tx: Any) -> Task:
        """Finalize and rate (requester only): pays the provider after an accept, records the rating.

        Raises:
            InvalidRating, NotRequester, WrongState: before sending.
        """
        if not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InvalidRating(f"rating must be 1..5, got {rating!r}")
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Accepted, Status.Rejected)
        self._send("finalize", int(task_id), rating, sender=sender, **tx)
        return self.task(task_id)

    def cancel(self, task_id: int, *, sender: Any, **tx: Any) -> Task:
        """Cancel a pending task; the deposit is credited back.

        Raises:
            NotRequester, WrongState: before sending.
        """
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Pending)
        self._send("cancel", int(task_id), sender=sender, **tx)
        return self.task(task_id)

    def expire(self, task_id: int, *, sender: Any, **tx: Any) -> Task:
        """Settle a task whose current deadline passed (anyone).

        Raises:
            WrongState, DeadlineNotReached: before sending.
        """
        task = self.task(task_id)
        self._expect(task, *OPEN_STATUSES)
        if self.now() <= task.deadline:
            raise DeadlineNotReached(f"task {task_id} ({task.status.name}) can be expired after {task.deadline}")
        # Gas estimation runs against the latest block, which on a quiet automine chain is still before the
        # deadline that the next block passes: estimating would revert, so expire sends a fixed limit.
        tx.setdefault("gas", EXPIRE_GAS)
        self._send("expire", int(task_id), sender=sender, **tx)
        return self.task(task_id)

    def withdraw(self, *, sender: Any, to: Any = None, **tx: Any) -> int:
        """Pay ``sender``'s credits to ``sender`` (or to ``to``).

        Returns:
            Wei paid.

        Raises:
            NothingToWithdraw: No credit.
        """
        amount = self.credit(sender)
        if amount == 0:
            raise NothingToWithdraw(f"{_sender_address(sender)} has no credit to withdraw")
        if to is None:
            receipt = self._send("withdraw", sender=sender, **tx)
        else:
            receipt = self._send("withdrawTo", _sender_address(to), sender=sender, **tx)
        return int(self._decoded(receipt, Withdrawn).amount)


def rank_key(worker: Worker) -> tuple:
    """Sort key used by :meth:`Market.providers` (exposed for callers that rank their own lists)."""
    avg = worker.average_rating
    return (avg is None, -(avg or 0.0), worker.price, worker.address.lower())


__all__: Sequence[str] = [
    "Market", "MarketError", "Task", "Worker", "Pools", "Status", "MarketEvent", "EVENT_TYPES", "TaskTransaction",
    *[cls.__name__ for cls in MarketError.__subclasses__()],
    *EVENT_TYPES,
]
