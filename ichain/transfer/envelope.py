"""The bytes the marketplace puts in a locator field of a TaskMarket event.

The contract treats locators as opaque bytes. The marketplace packs into them:

- the sender's X25519 public key (32 bytes; a requester is not a registered worker, so this is how
  the provider learns where to seal the result), and
- one or more sealed transfer locators (``ChunkHost.offer``), in a fixed order per use:
  ``[task]`` in TaskPosted/ProviderAssigned, ``[bundle of task and result for V]`` in ResultSubmitted,
  ``[result for R by V]`` in VerdictSubmitted (nothing sealed to the requester is on chain before the accept).

Every sealed part is bound (see :class:`~ichain.transfer.crypto.TransferContext`) to the chain, market,
task id, role, the requester's address and this envelope's sender key, so an envelope re-posted by
another requester or re-wrapped under another key does not open. A task locator is sealed before the
post, so under task id 0 (the id is not known yet); the provider checks the fetched archive against
the task hash of the event.

Layout (version 3): ``b"IC" | version (1) | sender key (32) | count (1) | (length u16 big-endian | sealed)*``.
Version 2 also carried a context task id; it is gone (task locators use id 0). Nothing in it is secret:
the sealed parts are readable only by their recipients.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ichain.transfer.crypto import TransferContext
from ichain.transfer.errors import TransferError

MAGIC = b"IC"
VERSION = 3
_HEADER = 2 + 1 + 32 + 1  # magic, version, sender key, count


class EnvelopeError(TransferError):
    """A locator on chain is not an iChain envelope (malformed or another version)."""


@dataclass(frozen=True)
class Envelope:
    """A decoded locator field.

    Attributes:
        sender_key: The sender's X25519 public key (32 bytes).
        sealed: The sealed transfer locators, in order.
    """

    sender_key: bytes
    sealed: tuple[bytes, ...]

    def context(self, chain_id: int, market: str, task_id: int, role: str, requester: str) -> TransferContext:
        """The context to open this envelope's items with: the event's chain, market, task and requester,
        and this envelope's sender key (task locators: ``task_id=0``).

        Raises:
            ContextInvalid: A field is malformed (the sender key too, when the envelope was not decoded).
        """
        return TransferContext(chain_id, market, task_id, role, requester, self.sender_key)

    def encode(self) -> bytes:
        """The bytes to put on chain."""
        if len(self.sender_key) != 32:
            raise EnvelopeError("sender key must be 32 bytes")
        if len(self.sealed) > 255:
            raise EnvelopeError("too many locators in one envelope")
        out = bytearray(MAGIC + bytes([VERSION]) + bytes(self.sender_key) + bytes([len(self.sealed)]))
        for item in self.sealed:
            if len(item) > 0xFFFF:
                raise EnvelopeError("sealed locator too long")
            out += struct.pack(">H", len(item)) + item
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> "Envelope":
        """Parse on-chain bytes; raises EnvelopeError on anything malformed."""
        data = bytes(data)
        if len(data) < 3 or data[:2] != MAGIC:
            raise EnvelopeError("locator is not an iChain envelope")
        if data[2] != VERSION:
            raise EnvelopeError(f"unsupported envelope version {data[2]} (expected {VERSION})")
        if len(data) < _HEADER:
            raise EnvelopeError("truncated envelope")
        key, count, pos = data[3:35], data[35], _HEADER
        items = []
        for _ in range(count):
            if pos + 2 > len(data):
                raise EnvelopeError("truncated envelope")
            (size,) = struct.unpack(">H", data[pos : pos + 2])
            pos += 2
            if pos + size > len(data):
                raise EnvelopeError("truncated envelope")
            items.append(data[pos : pos + size])
            pos += size
        if pos != len(data):
            raise EnvelopeError("trailing bytes in envelope")
        return cls(key, tuple(items))
