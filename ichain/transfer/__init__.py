"""Encrypted, chunked, parallel, resumable file transfer between peers.

Public API (see docs/ARCHITECTURE.md, "ichain.transfer")::

    keypair = KeyPair.load_or_create(path)            # X25519; keypair.public_bytes goes on chain
    host = ChunkHost(folder, transport=DirectTransport()); host.start()
    sealed = host.offer(path, recipient_public_key, TransferContext(chain_id, market, task_id, role))
    result = fetch(sealed, keypair, context, dest_file)   # -> FetchResult
    host.stop()
"""

from ichain.transfer.errors import (
    ChunkAfterFinal,
    ContextInvalid,
    DestinationError,
    HostError,
    HostUnreachable,
    KeyFileError,
    LocatorInvalid,
    ManifestInvalid,
    Stalled,
    TamperedChunk,
    TransferError,
    TransferIncomplete,
    TransferNotFound,
    TransferTooLarge,
    TransportError,
    WrongKey,
)
from ichain.transfer.transport import DirectTransport, Transport, default_transport

__all__ = [
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
