"""Encrypted, chunked, parallel, resumable file transfer between peers.

Public API (see docs/ARCHITECTURE.md, "ichain.transfer")::

    keypair = KeyPair.load_or_create(path)            # X25519; keypair.public_bytes goes on chain
    host = ChunkHost(folder, transport=DirectTransport()); host.start()
    context = TransferContext(chain_id, market, task_id, role, requester, sender_key)
    sealed = host.offer(path, recipient_public_key, context)
    result = fetch(sealed, keypair, context, dest_file)   # -> FetchResult
    host.stop()
    locator = Envelope(sender_key, (sealed,)).encode()  # what goes on chain
    report = seal_report(requester_public, context, exit_code, stage, stderr, keypair)  # TaskFailed's report
    open_report(report, requester_keypair, context)        # -> FailureReport
"""

from ichain.transfer.crypto import KeyPair, OpenedLocator, TransferContext, open_locator
from ichain.transfer.envelope import Envelope, EnvelopeError
from ichain.transfer.errors import (
    ChunkAfterFinal,
    ContextInvalid,
    DestinationError,
    HostError,
    HostUnreachable,
    KeyFileError,
    LocatorInvalid,
    ManifestInvalid,
    PublicKeyInvalid,
    ReportInvalid,
    Stalled,
    TamperedChunk,
    TransferError,
    TransferIncomplete,
    TransferNotFound,
    TransferTooLarge,
    TransportError,
    WrongKey,
)
from ichain.transfer.fetch import default_concurrency, fetch, fetch_async
from ichain.transfer.host import ChunkHost, SealedLocator
from ichain.transfer.manifest import Manifest
from ichain.transfer.progress import FetchProgress, progress_bar
from ichain.transfer.receive import FetchResult, Receiver
from ichain.transfer.report import FailureReport, open_report, report_sender, seal_report
from ichain.transfer.send import DEFAULT_CHUNK_SIZE
from ichain.transfer.transport import DirectTransport, Transport, default_transport

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkHost",
    "Envelope",
    "EnvelopeError",
    "FailureReport",
    "FetchProgress",
    "FetchResult",
    "KeyPair",
    "Manifest",
    "OpenedLocator",
    "PublicKeyInvalid",
    "Receiver",
    "ReportInvalid",
    "SealedLocator",
    "TransferContext",
    "default_concurrency",
    "fetch",
    "fetch_async",
    "open_locator",
    "open_report",
    "report_sender",
    "seal_report",
    "progress_bar",
    "ChunkAfterFinal",
    "ContextInvalid",
    "DestinationError",
    "DirectTransport",
    "HostError",
    "HostUnreachable",
    "KeyFileError",
    "LocatorInvalid",
    "ManifestInvalid",
    "Stalled",
    "TamperedChunk",
    "TransferError",
    "TransferIncomplete",
    "TransferNotFound",
    "TransferTooLarge",
    "Transport",
    "TransportError",
    "WrongKey",
    "default_transport",
]
