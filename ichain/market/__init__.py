"""Python SDK over the TaskMarket and Ratings contracts (ApePay style).

A :class:`Market` wraps both contracts. Every state-changing method reads the chain first and raises a typed
:class:`MarketError` (one line, a subclass of :class:`ichain.errors.IChainError`) *before* sending a transaction
that would revert; if a transaction reverts anyway (a race, a clock edge), the contract's custom error is turned
into the same typed error. Reads return domain objects (:class:`Task`, :class:`Worker`, :class:`Pools`) and
:meth:`Market.events` returns typed event objects decoded from one ``eth_getLogs`` call over a block range.

The modules: :mod:`~ichain.market.errors` (the typed errors, :func:`error_from_revert`),
:mod:`~ichain.market.types` (:class:`Status`, :class:`Task`, :class:`Worker`, :class:`Pools`,
:class:`TaskTransaction`, :class:`Record`, the contract's constants, address helpers), :mod:`~ichain.market.events` (the event classes and their decoder)
and :mod:`~ichain.market.sdk` (:class:`Market`, :func:`rank_key`). Import from this package; every name below
is re-exported here.

Usage::

    market = Market.from_deployment()
    market.register(keypair.public_bytes, price=10**15, sender=provider)
    market.set_trust(validator, sender=provider)  # the provider consents to its judges
    task = market.post(task_hash, price=10**16, validator_fee=10**15, provider=p, validator=v, locator=loc,
                       sender=requester)
    market.submit_result(task.task_id, result_hash, validator_locator, sender=p)  # sends the collateral
    market.submit_verdict(task.task_id, result_hash, True, requester_locator, sender=v)  # pays, delivers
    market.rate(task.task_id, 5, 4, sender=requester)
    market.decline(other_id, "needs runtime ichain-torch", sender=p)  # a task p cannot run: full refund
    market.publish_offer(b'{"gpu": "H200"}', sender=p)  # the document in the log, hash and block on chain
    docs = market.offer_documents(market.providers())  # address -> document, checked against each record
"""

from ichain.market.errors import (
    AlreadyRegistered,
    DeadlineNotReached,
    DeadlinePassed,
    InsufficientDeposit,
    NotConfirmed,
    InvalidInput,
    InvalidOffer,
    InvalidProvider,
    InvalidRating,
    InvalidReport,
    InvalidValidator,
    MarketError,
    NotAWorker,
    NothingToWithdraw,
    NotProvider,
    NotRequester,
    NotValidator,
    PriceTooLow,
    TaskNotFound,
    TimeoutOutOfBounds,
    TransactionFailed,
    TransferFailed,
    ValidatorNotTrusted,
    WorkerUnavailable,
    WrongDeposit,
    WrongResult,
    WrongState,
    error_from_revert,
)
from ichain.market.events import (
    EVENT_TYPES,
    MarketEvent,
    ProviderAssigned,
    ResultSubmitted,
    TaskCancelled,
    TaskDeclined,
    TaskEvent,
    TaskExpired,
    TaskFailed,
    TaskPosted,
    TaskRated,
    TrustChanged,
    VerdictSubmitted,
    Withdrawn,
    WorkerLeft,
    WorkerOffered,
    WorkerRegistered,
    WorkerTracked,
    WorkerUpdated,
)
from ichain.market.sdk import EXPIRE_GAS, OFFER_LOG_SPAN, PAGE, UINT96_MAX, Market, rank_key
from ichain.market.types import (
    BPS,
    BURN_BPS,
    COLLATERAL_BPS,
    FAILURE_BPS,
    MAX_OFFER,
    MAX_REPORT,
    OPEN_STATUSES,
    PRIOR_SCORE_MILLI,
    PRIOR_WEIGHT_GWEI,
    SETTLED_STATUSES,
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
    burn_of,
    collateral_for,
    commitment_of,
)

__all__ = [
    # the SDK
    "Market",
    "rank_key",
    "commitment_of",
    "EXPIRE_GAS",
    "OFFER_LOG_SPAN",
    "PAGE",
    "UINT96_MAX",
    # domain types and the contract's constants
    "AddressLike",
    "BPS",
    "BURN_BPS",
    "COLLATERAL_BPS",
    "FAILURE_BPS",
    "MAX_OFFER",
    "MAX_REPORT",
    "OPEN_STATUSES",
    "PRIOR_SCORE_MILLI",
    "PRIOR_WEIGHT_GWEI",
    "SETTLED_STATUSES",
    "Pools",
    "Record",
    "Role",
    "Status",
    "Task",
    "TaskTransaction",
    "Windows",
    "Worker",
    "ZERO_ADDRESS",
    "burn_of",
    "collateral_for",
    # errors
    "MarketError",
    "AlreadyRegistered",
    "DeadlineNotReached",
    "DeadlinePassed",
    "InsufficientDeposit",
    "NotConfirmed",
    "InvalidInput",
    "InvalidOffer",
    "InvalidProvider",
    "InvalidRating",
    "InvalidReport",
    "InvalidValidator",
    "NotAWorker",
    "NothingToWithdraw",
    "NotProvider",
    "NotRequester",
    "NotValidator",
    "PriceTooLow",
    "TaskNotFound",
    "TimeoutOutOfBounds",
    "TransactionFailed",
    "TransferFailed",
    "ValidatorNotTrusted",
    "WorkerUnavailable",
    "WrongDeposit",
    "WrongResult",
    "WrongState",
    "error_from_revert",
    # events
    "EVENT_TYPES",
    "MarketEvent",
    "TaskEvent",
    "ProviderAssigned",
    "ResultSubmitted",
    "TaskCancelled",
    "TaskDeclined",
    "TaskExpired",
    "TaskFailed",
    "TaskPosted",
    "TaskRated",
    "TrustChanged",
    "VerdictSubmitted",
    "Withdrawn",
    "WorkerLeft",
    "WorkerOffered",
    "WorkerRegistered",
    "WorkerTracked",
    "WorkerUpdated",
]
