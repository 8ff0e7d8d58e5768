"""The contracts' events as typed objects, and the decoder that builds them from raw logs."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, ClassVar, Iterable, Mapping

from eth_utils import keccak, to_checksum_address

from ichain.market.errors import MarketError
from ichain.market.types import Status, as_bytes


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
class TaskEvent(MarketEvent):
    """Base of the events about one task.

    Attributes:
        task_id: The task.
    """

    task_id: int


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
class WorkerOffered(MarketEvent):
    """A worker published its offer; ``offer`` is the document itself (its record keeps only the hash and block).

    Attributes:
        worker: The worker.
        offer_hash: keccak256 of ``offer``, as the event's topic says (check it: :meth:`matches`).
        offer: The offer document (the daemon writes JSON; the contract never reads it).
    """

    event_name: ClassVar[str] = "WorkerOffered"
    worker: str
    offer_hash: bytes
    offer: bytes

    @property
    def matches(self) -> bool:
        """Whether the document's keccak256 is the hash the event was indexed under."""
        return keccak(bytes(self.offer)) == bytes(self.offer_hash)


@dataclass(frozen=True, kw_only=True)
class TrustChanged(MarketEvent):
    """A provider added a validator to its trusted set (``trusted``) or removed it."""

    event_name: ClassVar[str] = "TrustChanged"
    provider: str
    validator: str
    trusted: bool


@dataclass(frozen=True, kw_only=True)
class TaskPosted(TaskEvent):
    """A task was posted with its escrow; ``locator`` is sealed to the named provider (empty while pending)."""

    event_name: ClassVar[str] = "TaskPosted"
    provider: str | None
    validator: str
    requester: str
    task_hash: bytes
    price: int
    validator_fee: int
    deadline: int
    locator: bytes


@dataclass(frozen=True, kw_only=True)
class ProviderAssigned(TaskEvent):
    """The requester named the provider of a pending task; ``locator`` is sealed to it."""

    event_name: ClassVar[str] = "ProviderAssigned"
    provider: str
    requester: str
    price: int
    deadline: int
    locator: bytes


@dataclass(frozen=True, kw_only=True)
class ResultSubmitted(TaskEvent):
    """The provider committed its result with ``collateral``; ``validator_locator`` is sealed to the validator."""

    event_name: ClassVar[str] = "ResultSubmitted"
    provider: str
    validator: str
    requester: str
    result_hash: bytes
    collateral: int
    deadline: int
    validator_locator: bytes


@dataclass(frozen=True, kw_only=True)
class TaskFailed(TaskEvent):
    """The provider ended a failing run; ``report`` is sealed to the requester."""

    event_name: ClassVar[str] = "TaskFailed"
    provider: str
    requester: str
    provider_paid: int
    refund: int
    burned: int
    report: bytes


@dataclass(frozen=True, kw_only=True)
class TaskDeclined(TaskEvent):
    """The provider declined a task it cannot run; the requester got price + fee back, nobody was paid.

    Attributes:
        provider: The provider that declined.
        reason: Why, in plain text as the provider sent it (public; neutralise it before showing it).
    """

    event_name: ClassVar[str] = "TaskDeclined"
    provider: str
    reason: bytes


@dataclass(frozen=True, kw_only=True)
class VerdictSubmitted(TaskEvent):
    """The validator judged the result; on accept ``requester_locator`` (sealed to the requester) opens it."""

    event_name: ClassVar[str] = "VerdictSubmitted"
    validator: str
    requester: str
    result_hash: bytes
    accepted: bool
    provider_paid: int
    validator_paid: int
    burned: int
    requester_locator: bytes


@dataclass(frozen=True, kw_only=True)
class TaskRated(TaskEvent):
    """The requester rated a Completed or Failed task (``validator_rating`` 0: the validator was not rated)."""

    event_name: ClassVar[str] = "TaskRated"
    provider: str
    requester: str
    validator: str
    provider_rating: int
    validator_rating: int


@dataclass(frozen=True, kw_only=True)
class TaskCancelled(TaskEvent):
    event_name: ClassVar[str] = "TaskCancelled"
    requester: str
    refund: int


@dataclass(frozen=True, kw_only=True)
class TaskExpired(TaskEvent):
    """A deadline passed: ``refund`` to the requester, ``payout`` (its collateral back) to the provider."""

    event_name: ClassVar[str] = "TaskExpired"
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
class WorkerTracked(MarketEvent):
    event_name: ClassVar[str] = "WorkerTracked"
    worker: str


EVENT_TYPES: dict[str, type[MarketEvent]] = {
    cls.event_name: cls
    for cls in (
        WorkerRegistered, WorkerUpdated, WorkerLeft, WorkerOffered, TrustChanged, TaskPosted, ProviderAssigned,
        ResultSubmitted, TaskFailed, TaskDeclined, VerdictSubmitted, TaskRated, TaskCancelled, TaskExpired, Withdrawn,
        WorkerTracked,
    )
}

# Static types the decoder reads as one 32-byte word (plus uintN), and the one dynamic type it reads.
_WORD_TYPES = ("address", "bool", "bytes32", "bytes")

# One event input: its field name, its canonical ABI type, whether it is indexed (a topic).
_Input = tuple[str, str, bool]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class EventDecoder:
    """Decodes raw logs of known events into :class:`MarketEvent` objects (word by word, no per-log lookups).

    Args:
        abis: The contracts' event ABIs (``ethpm_types.EventABI``); events without a class here are skipped.

    Raises:
        MarketError: An event's ABI does not match its class (the contracts changed and this module did not).
    """

    def __init__(self, abis: Iterable[Any]):
        self._by_topic: dict[bytes, tuple[type[MarketEvent], list[_Input]]] = {}
        for abi in abis:
            cls = EVENT_TYPES.get(abi.name)
            if cls is None:
                continue
            inputs = [(_snake(i.name), i.canonical_type, bool(i.indexed)) for i in abi.inputs]
            for _, typ, indexed in inputs:
                if not (typ in _WORD_TYPES or typ.startswith("uint")) or (indexed and typ == "bytes"):
                    raise MarketError(f"SDK cannot decode {typ} in event {abi.name} - update ichain/market/events.py")
            own = {f.name for f in fields(cls)} - {f.name for f in fields(MarketEvent)}
            if own != {n for n, _, _ in inputs}:  # the ABI changed: fail loudly, not silently mis-decode
                raise MarketError(
                    f"SDK event {abi.name} does not match the contract ABI - update ichain/market/events.py"
                )
            self._by_topic[keccak(text=abi.selector)] = (cls, inputs)

    @property
    def topics(self) -> list[str]:
        """The topic (0x hex) of every event this decoder knows."""
        return ["0x" + t.hex() for t in self._by_topic]

    @property
    def task_topics(self) -> list[str]:
        """The topic (0x hex) of every task event (their first indexed argument is the task id)."""
        return ["0x" + t.hex() for t, (cls, _) in self._by_topic.items() if issubclass(cls, TaskEvent)]

    def decode(self, log: Mapping[str, Any]) -> MarketEvent | None:
        """One raw log (as ``eth_getLogs`` or a receipt gives it) as its event, or None for an unknown event."""
        topics = [as_bytes(t) for t in log["topics"]]
        entry = self._by_topic.get(topics[0]) if topics else None
        if entry is None:
            return None
        cls, inputs = entry
        data = as_bytes(log["data"])
        values: dict[str, Any] = {}
        topic_index, head = 1, 0
        for name, typ, indexed in inputs:
            raw: Any
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
            transaction_hash="0x" + as_bytes(log["transactionHash"]).hex(),
            contract_address=_checksum(str(log["address"])),
            **values,
        )


def _word(word: bytes, typ: str) -> str | bool | bytes | int:
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


def _as_int(value: int | str) -> int:
    """A number as nodes give it: an int, or hex text."""
    return int(value, 16) if isinstance(value, str) else int(value)
