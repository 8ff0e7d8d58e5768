"""Errors of the transfer layer: every one is an :class:`~ichain.errors.IChainError` with a one-line message."""

from ichain.errors import IChainError


class TransferError(IChainError):
    """Base of every transfer error."""


class KeyFileError(TransferError):
    """A key file is unreadable, malformed or too permissive."""


class PublicKeyInvalid(TransferError):
    """A public key is not 32 bytes or is a degenerate X25519 point."""


class ContextInvalid(TransferError):
    """A transfer context field (chain id, market, task id, role) is malformed."""


class LocatorInvalid(TransferError):
    """A sealed locator is malformed (wrong length or version)."""


class WrongKey(TransferError):
    """The locator does not open with this key and context (not ours, or tampered)."""


class ReportInvalid(TransferError):
    """A failure report is malformed, of another version, out of limits, or its contents are not a report."""


class ManifestInvalid(TransferError):
    """The manifest does not match the locator's hash, or is malformed or out of limits."""


class TamperedChunk(TransferError):
    """A chunk failed its hash or authentication check (bit flip, truncation, swap, duplication...)."""


class TransferIncomplete(TransferError):
    """The stream ended before its final chunk (dropped or missing chunks)."""


class ChunkAfterFinal(TransferError):
    """A chunk arrived after the chunk flagged final."""


class TransferTooLarge(TransferError):
    """The transfer is larger than the receiver's limit."""


class TransportError(TransferError):
    """A transport could not publish or connect."""


class HostUnreachable(TransportError):
    """The chunk host could not be reached (refused, reset, timeout) after all retries."""


class TransferNotFound(TransportError):
    """The host does not (or no longer) serve this transfer or chunk."""


class Stalled(TransportError):
    """The host stopped sending bytes for longer than the stall timeout, on every retry."""


class DestinationError(TransferError):
    """The destination file cannot be written."""


class HostError(TransferError):
    """The chunk host cannot start, offer or serve (bad folder, not started, unreadable source)."""
