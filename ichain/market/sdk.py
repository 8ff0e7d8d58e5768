"""The :class:`Market` SDK: both contracts behind one object with typed pre-checks, reads and events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

from eth_utils import keccak, to_checksum_address

from ichain.market.errors import (
    AlreadyRegistered,
    DeadlineNotReached,
    DeadlinePassed,
    InsufficientDeposit,
    InvalidInput,
    InvalidOffer,
    InvalidProvider,
    InvalidRating,
    InvalidReport,
    InvalidValidator,
    MarketError,
    NotAWorker,
    NotConfirmed,
    NothingToWithdraw,
    NotProvider,
    NotRequester,
    NotValidator,
    PriceTooLow,
    TaskNotFound,
    TimeoutOutOfBounds,
    TransactionFailed,
    ValidatorNotTrusted,
    WorkerUnavailable,
    WrongResult,
    WrongState,
    error_from_revert,
)
from ichain.market.events import (
    EventDecoder,
    MarketEvent,
    ResultSubmitted,
    TaskEvent,
    TaskPosted,
    TrustChanged,
    VerdictSubmitted,
    Withdrawn,
    WorkerOffered,
)
from ichain.market.types import (
    MAX_OFFER,
    MAX_REPORT,
    OPEN_STATUSES,
    ZERO_ADDRESS,
    AddressLike,
    Pools,
    Record,
    Role,
    Status,
    Task,
    TaskTransaction,
    Windows,
    Worker,
    address_of,
    address_or_none,
    as_bytes,
    collateral_for,
    commitment_of,
)

if TYPE_CHECKING:
    from ape.api import AccountAPI, ReceiptAPI

UINT96_MAX = 2**96 - 1
PAGE = 500  # positions scanned per view call when walking the pools
_BATCH = 100  # calls per JSON-RPC batch (public nodes cap batch sizes)
# Largest block range one eth_getLogs of offer_documents spans (a common cap of public nodes); offers further
# apart are fetched with one call per range.
OFFER_LOG_SPAN = 10_000
_OFFERED_TOPIC = "0x" + keccak(text="WorkerOffered(address,bytes32,bytes)").hex()

# Gas limit expire() is sent with, since estimating it would revert (see Market.expire): over twice its most
# expensive branch (a silent validator: collateral back and a missed verdict counted, 76k on anvil), so a
# repricing of storage does not make it run out; test_expire__every_open_state__gas_well_under_expire_gas checks
# every branch fits half.
EXPIRE_GAS = 200_000

_E = TypeVar("_E", bound=MarketEvent)


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
        from ape import chain
        from ape.exceptions import ApeException

        from ichain.contracts import contract_type

        def instance(name: str, at: str) -> Any:
            # The contract types packaged with iChain (ichain/contracts/manifest.json: no compiler, no project),
            # never one ape cached on disk for the address: a local node reuses addresses across runs, and a stale
            # type (an older build, another contract) would decode this market's events and calls wrongly.
            return chain.contracts.instance_at(at, contract_type=contract_type(name), fetch_from_explorer=False,
                                               fetch_from_disk=False, detect_proxy=False, replace=True)

        try:
            self.contract = instance("TaskMarket", address)
            self.ratings = instance("Ratings", self.contract.ratings())
        except (ApeException, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MarketError(f"no TaskMarket at {address} on this network: {first}") from None
        self.address = str(self.contract.address)
        self.start_block = int(start_block)
        self._decoder = EventDecoder(
            list(self.contract.contract_type.events) + list(self.ratings.contract_type.events)
        )
        self._windows: Windows | None = None
        self._w3: tuple[Any, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def at(cls, address: str, *, start_block: int = 0) -> Market:
        """The market at ``address`` on the connected network."""
        return cls(address, start_block=start_block)

    @classmethod
    def from_deployment(cls, chain_id: int | None = None, path: Path | None = None) -> Market:
        """The market recorded in :mod:`ichain.deployments` for the connected network.

        Args:
            chain_id: Look up this chain id instead of the connected one.
            path: Read only this registry file instead of the search path (``$ICHAIN_DEPLOYMENTS``, the user
                registry in Ape's data folder, the registry packaged with iChain; see :mod:`ichain.deployments`).

        Raises:
            ichain.deployments.DeploymentError: Nothing recorded, or no code at the recorded address.
        """
        from ape import chain

        from ichain import deployments

        cid = int(chain_id) if chain_id is not None else deployments.connected_chain_id()
        found = deployments.find(cid, path)
        if not chain.provider.get_code(found.market):
            hint = " (a restarted local chain: its deployments die with it)" if cid in deployments.LOCAL_CHAIN_IDS else ""
            raise deployments.DeploymentError(
                f"no contract code at the recorded TaskMarket {found.market} on chain id {cid}{hint} "
                "- deploy again with `ape ichain deploy`"
            )
        return cls(found.market, start_block=found.block)

    @classmethod
    def deploy(cls, sender: AccountAPI, *, save: bool = False, **kwargs: Any) -> Market:
        """Deploy a new market (see :func:`ichain.deployments.deploy`) and wrap it."""
        from ichain import deployments

        found = deployments.deploy(sender, save=save, **kwargs)
        return cls(found.market, start_block=found.block)

    # ------------------------------------------------------------------ parameters
    @property
    def windows(self) -> Windows:
        """The market's immutable windows (seconds): validation window, min/max timeout.

        A mapping; calling it (``market.windows()``) gives the same mapping, for code that reads it as a method.
        """
        if self._windows is None:
            validation, low, high = self._read_many(
                [("validationWindow", ()), ("minTimeout", ()), ("maxTimeout", ())]
            )
            self._windows = Windows(
                validation_window=int(validation), min_timeout=int(low), max_timeout=int(high)
            )
        return self._windows

    def burned(self) -> int:
        """Wei burned so far by the market (1% of every paid amount, the rest of slashed collateral)."""
        return int(self.contract.burned())

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
            provider=address_or_none(raw.provider),
            validator=to_checksum_address(raw.validator),
            price=int(raw.price),
            validator_fee=int(raw.validatorFee),
            timeout=int(raw.timeout),
            pool_index=int(raw.poolIndex),
        )

    def worker(self, address: AddressLike) -> Worker:
        """One worker with its two rating records (``registered`` False for unknown accounts)."""
        return self.workers([address])[0]

    def workers(self, addresses: Iterable[AddressLike]) -> list[Worker]:
        """Several workers with their provider and validator records, read in one round trip."""
        addrs = [address_of(a) for a in addresses]
        calls = [
            call for a in addrs for call in (
                ("getWorker", (a,)), ("ratings.recordOf", (a, int(Role.Provider))),
                ("ratings.recordOf", (a, int(Role.Validator))),
            )
        ]
        raws = self._read_many(calls)
        return [self._worker_of(a, *raws[3 * k:3 * k + 3]) for k, a in enumerate(addrs)]

    @staticmethod
    def _worker_of(address: str, raw: Any, as_provider: Any, as_validator: Any) -> Worker:
        return Worker(
            address=address,
            worker_id=int(raw.id),
            enc_key=as_bytes(raw.encKey),
            price=int(raw.price),
            registered=bool(raw.registered),
            available=bool(raw.available),
            missed=int(raw.missed),
            provider_record=_record_of(as_provider),
            validator_record=_record_of(as_validator),
            offer_hash=None if as_bytes(raw.offerHash) == bytes(32) else as_bytes(raw.offerHash),
            offer_block=int(raw.offerBlock),
        )

    def credit(self, address: AddressLike) -> int:
        """Withdrawable wei of ``address``."""
        return int(self.contract.creditOf(address_of(address)))

    def last_task_id(self) -> int:
        """Id of the last posted task (0 before any)."""
        return int(self.contract.lastTaskId())

    def available_workers(self) -> list[str]:
        """Addresses of all available workers (paginated reads)."""
        total, first = self._read_many([("availableWorkerCount", ()), ("availableWorkers", (0, PAGE))])
        return self._rest_of_workers(int(total), list(first))

    def _rest_of_workers(self, total: int, first: list[Any]) -> list[str]:
        out: list[str] = [to_checksum_address(a) for a in first]
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
        pools = {"pending": Status.Pending, "executing": Status.Executing, "validating": Status.Validating}
        total, workers_total, workers, *pages = self._read_many(
            [("openTaskCount", ()), ("availableWorkerCount", ()), ("availableWorkers", (0, PAGE))]
            + [("tasksInStatus", (int(s), 0, PAGE)) for s in pools.values()]
        )
        ids = {name: self._rest_of_scan(s, int(total), page) for (name, s), page in zip(pools.items(), pages)}
        return Pools(**ids, available=self._rest_of_workers(int(workers_total), list(workers)))

    def providers(self) -> list[Worker]:
        """Available workers ranked by provider score (best first), then rating count, price, address."""
        return sorted(self.workers(self.available_workers()), key=rank_key)

    def validators(self, provider: AddressLike | None = None, *, exclude: Iterable[AddressLike] = ()) -> list[Worker]:
        """Available validators ranked by validator score (best first, see :func:`rank_key`).

        Args:
            provider: Only the validators this provider trusts (the ones a task for it may name); never the
                provider itself.
            exclude: Addresses left out (the requester, say).
        """
        skip = {address_of(a) for a in exclude}
        if provider is None:
            candidates = self.available_workers()
        else:
            skip.add(address_of(provider))
            candidates = self.trusted_validators(provider)
        found = [w for w in self.workers(a for a in candidates if a not in skip) if w.registered and w.available]
        return sorted(found, key=lambda w: rank_key(w, Role.Validator))

    def _read_many(self, calls: Sequence[tuple[str, tuple]]) -> list[Any]:
        """View calls ``(function, args)`` (``"ratings.<fn>"`` for Ratings) in JSON-RPC batches.

        Why: ape's call path costs several RPC requests per call, so a pool viewer listing 25 tasks takes
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

    def task_events(self, task_id: int, *, start_block: int | None = None) -> list[TaskEvent]:
        """The events of one task, in chain order (one ``eth_getLogs`` filtered by the indexed task id).

        What a watcher needs without scanning every log: the TaskPosted locator, the ResultSubmitted envelope
        (whose header holds the provider's key), the VerdictSubmitted requester locator, a TaskFailed report.

        Args:
            task_id: The task.
            start_block: First block searched (default: the market's deployment block).
        """
        from ape import chain

        task_topic = "0x" + int(task_id).to_bytes(32, "big").hex()
        logs = chain.provider.make_request(
            "eth_getLogs",
            [{"address": self.address, "topics": [self._decoder.task_topics, task_topic],
              "fromBlock": hex(self.start_block if start_block is None else int(start_block)),
              "toBlock": hex(int(chain.blocks.head.number))}],
        )
        out = [e for e in (self._decoder.decode(dict(log)) for log in logs)
               if isinstance(e, TaskEvent) and e.task_id == int(task_id)]
        out.sort(key=lambda e: (e.block_number, e.log_index))
        return out

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
            if isinstance(event, TaskEvent) and event.task_id == int(task_id):
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

        Not ape's ``chain.pending_timestamp`` either, although on anvil (after time travel, after a snapshot
        revert) both give the pending block's timestamp: ape's raises on a node without a pending block, and on
        a node that answers "pending" with its latest block (many public RPC nodes do) it returns that block's
        timestamp, up to a block time in the past. Deadlines judged by it would pass late: :meth:`expire`
        would refuse tasks the next block can expire, and a result or verdict due by then would be sent to
        revert. On such nodes the next block comes no earlier than this machine's clock, so that is used.
        """
        from ape import chain
        from web3.exceptions import Web3Exception

        web3 = chain.provider.web3
        latest = web3.eth.get_block("latest")
        try:
            pending = web3.eth.get_block("pending")
        except (Web3Exception, ValueError):  # a node without a pending block
            pending = None
        if pending and int(pending.get("number") or 0) > int(latest["number"]):
            return int(pending["timestamp"])
        # The node answered "pending" with its latest block: the next one comes no earlier than now.
        return max(int(latest["timestamp"]), int(time.time()))

    # ------------------------------------------------------------------ helpers

    def _own_task(self, task_id: int, sender: AccountAPI) -> Task:
        task = self.task(task_id)
        if task.requester != address_of(sender):
            raise NotRequester(f"only the requester {task.requester} can do this on task {task_id}")
        return task

    @staticmethod
    def _expect(task: Task, *allowed: Status) -> None:
        if task.status not in allowed:
            names = " or ".join(s.name for s in allowed)
            raise WrongState(f"task {task.task_id} is {task.status.name}, not {names}")

    def _check_parties(self, validator: str | None, fee: int, provider: str | None, price: int,
                       task_validator: str | None = None) -> None:
        """The on-chain checks of a task's parties, read in one round trip.

        A validator is never drafted without its consent to the fee (registered, available, fee >= its price);
        a provider takes only tasks that pay its price, judged by a validator it trusts.

        Args:
            validator: The validator to check (None: skip, as in assign_provider where it was checked at post).
            fee: The fee offered to the validator.
            provider: The provider to check (None: none named).
            price: The price offered to the provider.
            task_validator: The validator the provider must trust (default ``validator``).
        """
        judge = task_validator or validator
        calls: list[tuple[str, tuple]] = []
        if validator is not None:
            calls.append(("getWorker", (validator,)))
        if provider is not None and judge is not None:
            calls += [("getWorker", (provider,)), ("trusts", (provider, judge))]
        raws = iter(self._read_many(calls))
        if validator is not None:
            asking = _usable(validator, next(raws), "validator")
            if asking > fee:
                raise PriceTooLow(f"validator {validator} asks {asking} wei, offered a fee of {fee}")
        if provider is not None and judge is not None:
            asking = _usable(provider, next(raws), "provider")
            if asking > price:
                raise PriceTooLow(f"provider {provider} asks {asking} wei, offered {price}")
            if not next(raws):
                raise ValidatorNotTrusted(f"provider {provider} does not trust validator {judge}")

    def _provided_task(self, task_id: int, sender: AccountAPI, what: str) -> Task:
        """The task, checked to be Executing, within its deadline, with ``sender`` its provider."""
        task = self.task(task_id)
        if task.provider != address_of(sender):
            raise NotProvider(f"only the provider {task.provider} can {what} task {task_id}")
        self._expect(task, Status.Executing)
        if self.now() > task.deadline:
            raise DeadlinePassed(f"too late to {what} task {task_id}: its execution deadline {task.deadline} "
                                 "has passed")
        return task

    def _send(
        self, method: str, *args: Any, sender: AccountAPI,
        on_receipt: Callable[[ReceiptAPI], None] | None = None, **tx: Any,
    ) -> ReceiptAPI:
        """Send one contract transaction.

        ``on_receipt`` (a keyword every sending method passes on through ``**tx``) gets the receipt, for callers
        that journal what they sent: the public methods return domain objects, not receipts. A failure raises
        the typed error with ``transaction_hash`` set when a signed transaction reached the node.
        """
        from ape.exceptions import ApeException

        try:
            receipt = getattr(self.contract, method)(*args, sender=sender, **tx)
        except ApeException as err:
            raise error_from_revert(err) from None
        if on_receipt is not None:
            on_receipt(receipt)
        return receipt

    def _decoded(self, receipt: ReceiptAPI, cls: type[_E]) -> _E:
        for log in receipt.logs:
            event = self._decoder.decode(dict(log))
            if isinstance(event, cls):
                return event
        raise TransactionFailed(f"transaction {receipt.txn_hash} emitted no {cls.event_name}")

    # ------------------------------------------------------------------ workers
    def register(
        self, enc_key: bytes, price: int, *, sender: AccountAPI, available: bool = True, **tx: Any
    ) -> Worker:
        """Register ``sender`` as a worker.

        Raises:
            InvalidInput: Key not 32 non-zero bytes, or price out of range.
            AlreadyRegistered: Already registered.
        """
        key = _bytes32(enc_key, "encryption key")
        _amount(price, "price")
        if self.worker(sender).registered:
            raise AlreadyRegistered(f"{address_of(sender)} is already a registered worker")
        self._send("register", key, price, bool(available), sender=sender, **tx)
        return self.worker(sender)

    def update(
        self, enc_key: bytes, price: int, *, sender: AccountAPI, available: bool = True, **tx: Any
    ) -> Worker:
        """Change ``sender``'s key, price or availability.

        Raises:
            NotAWorker: Not registered.
        """
        key = _bytes32(enc_key, "encryption key")
        _amount(price, "price")
        if not self.worker(sender).registered:
            raise NotAWorker(f"{address_of(sender)} is not a registered worker")
        self._send("update", key, price, bool(available), sender=sender, **tx)
        return self.worker(sender)

    def leave(self, *, sender: AccountAPI, **tx: Any) -> None:
        """Leave the registry (open tasks carry on; credits stay withdrawable).

        Raises:
            NotAWorker: Not registered.
        """
        if not self.worker(sender).registered:
            raise NotAWorker(f"{address_of(sender)} is not a registered worker")
        self._send("leave", sender=sender, **tx)

    # ------------------------------------------------------------------ offers
    def publish_offer(self, document: bytes, *, sender: AccountAPI, **tx: Any) -> Worker:
        """Publish ``sender``'s offer (its hardware and runtimes, as the daemon describes them).

        The document is only emitted (``WorkerOffered``); the worker's record keeps its keccak256 and the block,
        so :meth:`offer_documents` finds it again from any node. A new offer replaces the old one; leaving the
        registry clears it. The contract cannot check what the document claims.

        Args:
            document: The offer document, 1..2048 bytes (the daemon writes JSON).

        Returns:
            The worker with its new ``offer_hash`` and ``offer_block``.

        Raises:
            InvalidOffer: Not bytes, empty or longer than 2048 bytes (before sending).
            NotAWorker: ``sender`` is not registered (before sending).
        """
        if not isinstance(document, (bytes, bytearray)):
            raise InvalidOffer(f"an offer document is bytes, got {type(document).__name__}")
        raw = bytes(document)
        if not 1 <= len(raw) <= MAX_OFFER:
            raise InvalidOffer(f"an offer document must be 1..{MAX_OFFER} bytes, got {len(raw)}")
        if not self.worker(sender).registered:
            raise NotAWorker(f"{address_of(sender)} is not a registered worker: register before publishing an offer")
        self._send("publishOffer", raw, sender=sender, **tx)
        return self.worker(sender)

    def offer_documents(self, workers: Iterable[Worker]) -> dict[str, bytes]:
        """The current offer document of each worker that has one, checked against its record.

        Each document is looked up in the logs of exactly its worker's ``offer_block`` (filtered by the worker and
        the hash topics): one ``eth_getLogs`` for all the workers whose blocks lie within ``OFFER_LOG_SPAN`` of
        each other, and one per block when a node refuses a range. A worker without an offer, or whose document
        cannot be found (a pruned node, a reorg) or does not hash to its ``offer_hash``, is simply absent.

        Args:
            workers: Worker records (:meth:`worker`, :meth:`workers`), as recent as the caller needs.

        Returns:
            Checksummed address -> the raw document.
        """
        wanted = {w.address: w for w in workers if w.offer_hash is not None and w.offer_block > 0}
        found: dict[str, bytes] = {}
        ordered = sorted(wanted.values(), key=lambda w: w.offer_block)
        group: list[Worker] = []
        for w in ordered:
            if group and (w.offer_block - group[0].offer_block > OFFER_LOG_SPAN or len(group) >= _BATCH):
                self._find_offers(group, found)
                group = []
            group.append(w)
        if group:
            self._find_offers(group, found)
        return found

    def offer_document(self, worker: Worker) -> bytes | None:
        """The current offer document of ``worker``, checked against its record, or None (see
        :meth:`offer_documents`)."""
        return self.offer_documents([worker]).get(worker.address)

    def _find_offers(self, group: list[Worker], found: dict[str, bytes]) -> None:
        """Look up the offers of ``group`` (blocks within OFFER_LOG_SPAN) into ``found``: one ranged call, or
        one call per block where the node refuses the range."""
        from ape.exceptions import ApeException

        try:
            self._match_offers(group, self._offer_logs(group, group[0].offer_block, group[-1].offer_block), found)
            return
        except (ApeException, ValueError):
            if group[0].offer_block == group[-1].offer_block:
                return  # a node that cannot serve this block's logs: these offers are not found
        for block in sorted({w.offer_block for w in group}):
            at = [w for w in group if w.offer_block == block]
            try:
                self._match_offers(at, self._offer_logs(at, block, block), found)
            except (ApeException, ValueError):
                continue

    def _offer_logs(self, group: list[Worker], start: int, stop: int) -> list:
        from ape import chain

        def topic(value: bytes) -> str:
            return "0x" + value.rjust(32, b"\0").hex()

        return chain.provider.make_request(
            "eth_getLogs",
            [{"address": self.address, "fromBlock": hex(start), "toBlock": hex(stop),
              "topics": [_OFFERED_TOPIC, [topic(bytes.fromhex(w.address[2:])) for w in group],
                         [topic(bytes(w.offer_hash or b"")) for w in group]]}],
        )

    def _match_offers(self, group: list[Worker], logs: list, found: dict[str, bytes]) -> None:
        """Keep, for each worker of ``group``, the logged document of its own block that hashes to its record."""
        by_address = {w.address: w for w in group}
        for log in logs:
            event = self._decoder.decode(dict(log))
            if not isinstance(event, WorkerOffered) or event.contract_address != self.address:
                continue
            w = by_address.get(event.worker)
            if w is None or event.block_number != w.offer_block or keccak(bytes(event.offer)) != w.offer_hash:
                continue
            found[w.address] = bytes(event.offer)

    # ------------------------------------------------------------------ trust
    def set_trust(
        self, validator: AddressLike, trusted: bool = True, *, sender: AccountAPI, **tx: Any
    ) -> bool:
        """Add ``validator`` to ``sender``'s trusted set (or remove it with ``trusted=False``).

        A requester can only pair a provider with a validator the provider trusts, so every verdict on its work
        comes from a party it consented to. Tasks already running keep their validator.

        Returns:
            Whether ``sender`` trusts ``validator`` now (read back from the chain).

        Raises:
            InvalidValidator: ``validator`` is the zero address or ``sender`` itself (before sending).
        """
        addr = address_of(validator)
        me = address_of(sender)
        if int(addr, 16) == 0 or addr == me:
            raise InvalidValidator(f"{me} cannot trust {addr} as a validator (zero address or itself)")
        self._send("setTrust", addr, bool(trusted), sender=sender, **tx)
        return self.trusts(me, addr)

    def trusts(self, provider: AddressLike, validator: AddressLike) -> bool:
        """Whether ``provider`` has ``validator`` in its trusted set (one view call)."""
        return bool(self.contract.trusts(address_of(provider), address_of(validator)))

    def trusted_validators(self, provider: AddressLike, *, start_block: int | None = None) -> list[str]:
        """The validators ``provider`` trusts now, in the order it first trusted them.

        Found from its ``TrustChanged`` events (one ``eth_getLogs`` filtered by the provider topic) and each
        confirmed with :meth:`trusts` in one batch, so a log range a node dropped cannot add a stale entry.

        Args:
            provider: The provider.
            start_block: First block searched (default: the market's deployment block).
        """
        from ape import chain

        addr = address_of(provider)
        topic = "0x" + keccak(text="TrustChanged(address,address,bool)").hex()
        logs = chain.provider.make_request(
            "eth_getLogs",
            [{"address": self.address, "topics": [topic, "0x" + bytes(12).hex() + addr[2:].lower()],
              "fromBlock": hex(self.start_block if start_block is None else int(start_block)),
              "toBlock": hex(int(chain.blocks.head.number))}],
        )
        seen: list[str] = []
        for event in (self._decoder.decode(dict(log)) for log in logs):
            if isinstance(event, TrustChanged) and event.provider == addr and event.validator not in seen:
                seen.append(event.validator)
        confirmed = self._read_many([("trusts", (addr, v)) for v in seen])
        return [v for v, ok in zip(seen, confirmed) if ok]

    # ------------------------------------------------------------------ task lifecycle
    def post(
        self,
        task_hash: bytes,
        *,
        validator: AddressLike,
        price: int,
        validator_fee: int,
        sender: AccountAPI,
        provider: AddressLike | None = None,
        locator: bytes = b"",
        timeout: int | None = None,
        confirm: Callable[[dict[str, Any]], bool] | None = None,
        **tx: Any,
    ) -> Task:
        """Post a task with its escrow (price + validator fee is sent with the transaction).

        Args:
            task_hash: SHA-256 of the task archive.
            validator: The validator (required): a registered, available worker asking at most ``validator_fee``.
            price: Wei for the provider on acceptance (at least the provider's asking price).
            validator_fee: Wei for the validator's verdict.
            sender: The requester.
            provider: The provider to name now, or None to leave the task pending (see :meth:`assign_provider`);
                it must trust ``validator``.
            locator: The task locator sealed to ``provider`` (empty while pending).
            timeout: Execution timeout in seconds (default :attr:`default_timeout`).
            confirm: Asked after every check passed, just before sending, with the terms (``provider``,
                ``validator``, ``price``, ``validator_fee``, ``deposit`` in wei, ``timeout``); False sends nothing.

        Raises:
            InvalidInput, TimeoutOutOfBounds, InvalidValidator, InvalidProvider, NotAWorker, WorkerUnavailable,
            PriceTooLow, ValidatorNotTrusted, InsufficientDeposit: before sending.
            NotConfirmed: ``confirm`` answered no (nothing sent).
        """
        task_hash = _bytes32(task_hash, "task hash")
        _amount(price, "price")
        _amount(validator_fee, "validator fee")
        me = address_of(sender)
        timeout = self.default_timeout if timeout is None else int(timeout)
        w = self.windows
        if not w["min_timeout"] <= timeout <= w["max_timeout"]:
            raise TimeoutOutOfBounds(f"timeout {timeout}s is outside [{w['min_timeout']}, {w['max_timeout']}]s")
        if validator is None or int(address_of(validator), 16) == 0:
            raise InvalidValidator("a task needs a validator (protocol v2): name one the provider trusts")
        validator_addr = address_of(validator)
        if validator_addr == me:
            raise InvalidValidator("the requester cannot be the validator")
        provider_addr = address_of(provider) if provider else None
        if provider_addr is not None:
            if provider_addr == me:
                raise InvalidProvider("the requester cannot be the provider")
            if provider_addr == validator_addr:
                raise InvalidProvider("the provider cannot be the validator")
        self._check_parties(validator_addr, validator_fee, provider_addr, price)
        deposit = price + validator_fee
        balance = int(sender.balance)
        if balance < deposit:
            raise InsufficientDeposit(f"{me} has {balance} wei, the deposit is {deposit} wei")
        if confirm is not None and not confirm({"provider": provider_addr, "validator": validator_addr, "price": price,
                                                "validator_fee": validator_fee, "deposit": deposit,
                                                "timeout": timeout}):
            raise NotConfirmed("not posted: the deposit was not confirmed (nothing sent)")
        terms = (provider_addr or ZERO_ADDRESS, validator_addr, price, validator_fee, timeout)
        receipt = self._send("post", task_hash, terms, bytes(locator), sender=sender, value=deposit, **tx)
        posted = self._decoded(receipt, TaskPosted)
        return self.task(posted.task_id)

    def assign_provider(
        self, task_id: int, provider: AddressLike, locator: bytes, *, sender: AccountAPI, **tx: Any
    ) -> Task:
        """Name the provider of a pending task; its execution deadline starts now.

        Raises:
            NotRequester, WrongState, InvalidProvider, NotAWorker, WorkerUnavailable, PriceTooLow,
            ValidatorNotTrusted: before sending.
        """
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Pending)
        addr = address_of(provider)
        if int(addr, 16) == 0 or addr == task.requester or addr == task.validator:
            raise InvalidProvider(f"provider {addr} cannot be zero, the requester or the validator")
        self._check_parties(None, 0, addr, task.price, task_validator=task.validator)
        self._send("assignProvider", int(task_id), addr, bytes(locator), sender=sender, **tx)
        return self.task(task_id)

    def collateral_for(self, price: int, validator_fee: int) -> int:
        """The collateral a provider posts with its result: the validator fee plus 10% of the price.

        Computed here (the contract's ``collateralFor`` is pure and gives the same number), so no call is spent.
        """
        return collateral_for(price, validator_fee)

    def submit_result(
        self, task_id: int, result_hash: bytes, validator_locator: bytes, *, sender: AccountAPI, **tx: Any
    ) -> Task:
        """Commit the result of an executing task with its collateral (provider only).

        The collateral (:meth:`collateral_for` the task's price and fee) is sent with the transaction; it comes
        back on accept or when the validator stays silent, and pays the validator on a reject.

        Args:
            result_hash: SHA-256 of the (salted) result archive.
            validator_locator: The locator sealed to the validator (task + result; nothing in it may open for
                the requester, who gets the validator's copy with the accept).

        Raises:
            InvalidInput, NotProvider, WrongState, DeadlinePassed, InsufficientDeposit: before sending.
        """
        rh = _bytes32(result_hash, "result hash")
        task = self._provided_task(task_id, sender, "submit the result of")
        collateral = task.collateral
        balance = int(sender.balance)
        if balance < collateral:
            raise InsufficientDeposit(f"{address_of(sender)} has {balance} wei, the collateral is {collateral} wei")
        self._send("submitResult", int(task_id), rh, bytes(validator_locator), sender=sender, value=collateral, **tx)
        return self.task(task_id)

    def report_failure(self, task_id: int, report: bytes, *, sender: AccountAPI, **tx: Any) -> Task:
        """End an executing task whose run failed, at once (provider only).

        The provider keeps the failure fee (10% of the price, less the burn); the requester gets the rest back
        and may rate the task.

        Args:
            report: Exit code and last lines of stderr sealed to the requester (``ichain.transfer.report``),
                1..1024 bytes.

        Raises:
            InvalidReport, NotProvider, WrongState, DeadlinePassed: before sending.
        """
        raw = bytes(report)
        if not 1 <= len(raw) <= MAX_REPORT:
            raise InvalidReport(f"a failure report must be 1..{MAX_REPORT} bytes, got {len(raw)}")
        self._provided_task(task_id, sender, "report the failure of")
        self._send("reportFailure", int(task_id), raw, sender=sender, **tx)
        return self.task(task_id)

    def decline(self, task_id: int, reason: str, *, sender: AccountAPI, **tx: Any) -> Task:
        """Give back an executing task ``sender`` cannot run (provider only), before its deadline.

        The requester is credited the whole escrow (price + validator fee) at once; nobody is paid, nothing is
        burned, and the task cannot be rated. After the deadline :meth:`expire` refunds the same.

        Args:
            reason: Why, in plain text (public on chain), e.g. "needs runtime ichain-torch; this provider has
                ichain-runtime"; 1..1024 bytes once UTF-8 encoded.

        Raises:
            InvalidReport, NotProvider, WrongState, DeadlinePassed: before sending.
        """
        if not isinstance(reason, str):
            raise InvalidReport(f"a decline reason is text, got {type(reason).__name__}")
        raw = reason.encode()
        if not 1 <= len(raw) <= MAX_REPORT:
            raise InvalidReport(f"a decline reason must be 1..{MAX_REPORT} bytes, got {len(raw)}")
        self._provided_task(task_id, sender, "decline")
        self._send("decline", int(task_id), raw, sender=sender, **tx)
        return self.task(task_id)

    def result_of(self, task_id: int) -> bytes | None:
        """The full result hash of ``task_id`` as the chain binds it, or None when none is bound.

        While the task is Validating the contract holds the first 24 bytes of the commitment (``resultOf``): the
        hash is the ResultSubmitted one whose prefix matches them. Once judged (Completed, Rejected, or Rated
        after a completion) it is the hash the verdict named, which the contract checked against the commitment.
        Other states bind no result (a failed or expired task never released one).
        """
        task = self.task(task_id)
        if task.status == Status.Validating:
            stored = bytes(self.contract.resultOf(int(task_id)))
            if stored == bytes(32):
                return None
            for event in reversed(self.task_events(task_id)):
                if isinstance(event, ResultSubmitted) and commitment_of(event.result_hash) == stored:
                    return bytes(event.result_hash)
            return None  # the node has not served the event yet
        if task.status in (Status.Completed, Status.Rejected, Status.Rated):
            for event in reversed(self.task_events(task_id)):
                if isinstance(event, VerdictSubmitted):
                    return bytes(event.result_hash)
        return None

    def submit_verdict(
        self, task_id: int, result_hash: bytes, accept: bool, requester_locator: bytes = b"", *,
        sender: AccountAPI, **tx: Any,
    ) -> Task:
        """Judge the committed result (validator only); the same transaction pays whoever the verdict favours.

        Args:
            result_hash: The result judged (must be the commitment).
            accept: True to accept.
            requester_locator: On accept, the result's locator sealed to the requester (ignored on reject).

        Raises:
            NotValidator, WrongState, DeadlinePassed, WrongResult: before sending.
        """
        rh = _bytes32(result_hash, "result hash")
        task = self.task(task_id)
        if task.validator != address_of(sender):
            raise NotValidator(f"only the validator {task.validator} can judge task {task_id}")
        self._expect(task, Status.Validating)
        if self.now() > task.deadline:
            raise DeadlinePassed(f"task {task_id}: the verdict was due by {task.deadline}")
        if self.result_of(task_id) != rh:
            raise WrongResult(f"0x{rh.hex()} is not the result committed for task {task_id}")
        locator = bytes(requester_locator) if accept else b""
        self._send("submitVerdict", int(task_id), rh, bool(accept), locator, sender=sender, **tx)
        return self.task(task_id)

    def rate(
        self, task_id: int, provider_rating: int, validator_rating: int = 0, *, sender: AccountAPI,
        confirm: Callable[[], bool] | None = None, **tx: Any
    ) -> Task:
        """Rate a Completed or Failed task, once (requester only); there is no default rating.

        Args:
            provider_rating: 1..5.
            validator_rating: 1..5, or 0 to leave the validator unrated (must be 0 on a failed task, which had
                no verdict).
            confirm: Asked after every check passed, just before sending (a rating is final); False sends nothing.

        Raises:
            InvalidRating, NotRequester, WrongState: before sending.
            NotConfirmed: ``confirm`` answered no (nothing sent).
        """
        _rating(provider_rating, "provider rating", 1)
        _rating(validator_rating, "validator rating", 0)
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Completed, Status.Failed)
        if task.status == Status.Failed and validator_rating:
            raise InvalidRating(f"task {task_id} failed before any verdict: its validator rating must be 0")
        if confirm is not None and not confirm():
            raise NotConfirmed(f"task {task_id} not rated (nothing sent)")
        self._send("rate", int(task_id), int(provider_rating), int(validator_rating), sender=sender, **tx)
        return self.task(task_id)

    def cancel(self, task_id: int, *, sender: AccountAPI, **tx: Any) -> Task:
        """Cancel a pending task; the deposit is credited back.

        Raises:
            NotRequester, WrongState: before sending.
        """
        task = self._own_task(task_id, sender)
        self._expect(task, Status.Pending)
        self._send("cancel", int(task_id), sender=sender, **tx)
        return self.task(task_id)

    def expire(self, task_id: int, *, sender: AccountAPI, **tx: Any) -> Task:
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

    def withdraw(self, *, sender: AccountAPI, to: AddressLike | None = None, **tx: Any) -> int:
        """Pay ``sender``'s credits to ``sender`` (or to ``to``).

        Returns:
            Wei paid.

        Raises:
            NothingToWithdraw: No credit.
        """
        amount = self.credit(sender)
        if amount == 0:
            raise NothingToWithdraw(f"{address_of(sender)} has no credit to withdraw")
        if to is None:
            receipt = self._send("withdraw", sender=sender, **tx)
        else:
            receipt = self._send("withdrawTo", address_of(to), sender=sender, **tx)
        return int(self._decoded(receipt, Withdrawn).amount)


def rank_key(worker: Worker, role: Role = Role.Provider) -> tuple[int, int, int, str]:
    """Sort key used by :meth:`Market.providers` and :meth:`Market.validators` (best first).

    Ranks by the role's Bayesian value-weighted score, which is count-aware (a few ratings barely move the
    3-star prior, paid work does), then by the larger number of ratings, the lower price and the address.
    The raw mean is never used: one self-dealt 5-star rating would top it.
    """
    record = worker.record(role)
    return (-record.score_milli, -record.count, worker.price, worker.address.lower())


def _rating(value: int, what: str, lowest: int) -> None:
    # bool is an int to Python; True would be sent as the rating 1
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 5:
        raise InvalidRating(f"{what} must be {lowest}..5, got {value!r}")


def _usable(address: str, raw: Any, role: str) -> int:
    """The asking price of a registered, available worker (``raw`` is its getWorker record)."""
    if not raw.registered:
        raise NotAWorker(f"{role} {address} is not a registered worker")
    if not raw.available:
        raise WorkerUnavailable(f"{role} {address} is not available")
    return int(raw.price)


def _record_of(raw: Any) -> Record:
    return Record(
        count=int(raw.count), sum=int(raw.sum), weight_gwei=int(raw.weightGwei),
        weighted_gwei=int(raw.weightedGwei), average_milli=int(raw.averageMilli), score_milli=int(raw.scoreMilli),
    )


def _bytes32(value: bytes | str, what: str) -> bytes:
    try:
        raw = as_bytes(value)
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
