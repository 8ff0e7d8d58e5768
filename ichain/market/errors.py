"""The SDK's typed errors, and the translation of the contracts' custom errors into them.

Every :class:`MarketError` is an :class:`ichain.errors.IChainError` with a one-line message. The SDK raises them
before sending a transaction that would revert; :func:`error_from_revert` turns a revert that happens anyway (a
race, a clock edge) into the same error.
"""

from __future__ import annotations

from typing import Any

from ichain.errors import IChainError


class MarketError(IChainError):
    """A TaskMarket operation that cannot succeed (raised before sending, or translated from a revert).

    Attributes:
        transaction_hash: Hash of the signed transaction that failed, when one was handed to the node (it may
            have been mined and reverted, or refused by the node); None when nothing was signed (a pre-check or
            the gas estimate failed), so no nonce was used.
    """

    transaction_hash: str | None = None


class NotConfirmed(MarketError):
    """The user answered no to the confirmation of a transaction: nothing was sent."""


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
    """The ether sent is not the deposit (price + validator fee) or the collateral, or the sender cannot afford it."""


# The contract calls this error WrongDeposit; both names are importable.
WrongDeposit = InsufficientDeposit


class TimeoutOutOfBounds(MarketError):
    """The per-task timeout is outside the market's bounds."""


class InvalidProvider(MarketError):
    """The provider cannot be the requester or the validator."""


class InvalidValidator(MarketError):
    """The validator is missing, or is the requester or the provider."""


class ValidatorNotTrusted(MarketError):
    """The provider has not put the validator in its trusted set."""


class InvalidReport(MarketError):
    """A failure report or a decline reason must be 1..1024 bytes."""


class InvalidOffer(MarketError):
    """An offer document must be 1..2048 bytes."""


class WrongResult(MarketError):
    """The result hash is not the task's committed result."""


class InvalidRating(MarketError):
    """A provider rating is 1..5; a validator rating 0..5 (0: not rated), and 0 on a failed task."""


class NothingToWithdraw(MarketError):
    """The account has no credit."""


class TransferFailed(MarketError):
    """The recipient refused the ether (the credit is kept)."""


class TransactionFailed(MarketError):
    """A transaction failed for a reason the SDK could not classify."""


# The contracts' custom errors by name, without their "TaskMarket__" / "Ratings__" prefix.
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
    "ValidatorNotTrusted": ValidatorNotTrusted,
    "InvalidReport": InvalidReport,
    "InvalidOffer": InvalidOffer,
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
        The typed error, with a one-line message and the hash of the signed transaction behind it, if any.
    """
    from ape.exceptions import CustomError

    typed: MarketError
    if isinstance(err, CustomError):
        # The contracts prefix their errors with their own name ("TaskMarket__WrongState").
        short = err.name.split("__", 1)[-1]
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in (err.inputs or {}).items())
        cls = _ERRORS_BY_NAME.get(short, TransactionFailed)
        typed = cls(f"transaction reverted: {short}" + (f" ({detail})" if detail else ""))
    else:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        typed = TransactionFailed(f"transaction failed: {text}")
    typed.transaction_hash = _signed_hash(err)
    return typed


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
    """One custom-error argument as the message shows it: bytes as 0x hex, ints (and int enums) as numbers."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    return str(value)
