"""The bytes the marketplace puts in a locator field of a TaskMarket event.

The contract treats locators as opaque bytes. The marketplace packs into them:

- the sender's X25519 public key (32 bytes; a requester is not a registered worker, so this is how
  the provider learns where to seal the result), and
- one or more sealed transfer locators (``ChunkHost.offer``), in a fixed order per use:
  ``[task]`` for a provider, ``[task]`` or ``[task, result]`` for a validator named after the result.

- the task id the sealed parts' transfer context was made for (0 = the event's own task id). A
  requester seals the task before posting, so it uses the id it expects (``lastTaskId + 1``); if
  another post wins that id, the provider still opens the locator with the id named here. This
  weakens nothing: the provider checks the fetched archive against the task hash of the event.

Layout: ``b"IC" | version (2) | public key (32) | context task id (u64) | count (1) |
(length u16 big-endian | sealed)*``. Nothing in it is secret: the sealed parts are readable only
by the recipient.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ichain.errors import IChainError

MAGIC = b"IC"
VERSION = 2


class EnvelopeError(IChainError):
    """A locator on chain is not an iChain envelope (malformed or another version)."""


@dataclass(frozen=True)
class Envelope:
    """A decoded locator field.

    Attributes:
        sender_key: The sender's X25519 public key (32 bytes).
        sealed: The sealed transfer locators, in order.
        context_id: Task id bound into the sealed parts' transfer context (0: the event's task id).
    """

    sender_key: bytes
    sealed: tuple[bytes, ...]
    context_id: int = 0

    def encode(self) -> bytes:
        """The bytes to put on chain."""
        if len(self.sender_key) != 32:
            raise EnvelopeError("sender key must be 32 bytes")
        if len(self.sealed) > 255:
            raise EnvelopeError("too many locators in one envelope")
        if not 0 <= int(self.context_id) < 2**64:
            raise EnvelopeError("context task id out of range")
        out = bytearray(MAGIC + bytes([VERSION]) + self.sender_key + int(self.context_id).to_bytes(8, "big")
                        + bytes([len(self.sealed)]))
        for item in self.sealed:
            if len(item) > 0xFFFF:
                raise EnvelopeError("sealed locator too long")
            out += struct.pack(">H", len(item)) + item
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> "Envelope":
        """Parse on-chain bytes; raises EnvelopeError on anything malformed."""
        data = bytes(data)
        if len(data) < 44 or data[:2] != MAGIC:
            raise EnvelopeError("locator is not an iChain envelope")
        if data[2] != VERSION:
            raise EnvelopeError(f"unsupported envelope version {data[2]}")
        key, context_id, count, pos = data[3:35], int.from_bytes(data[35:43], "big"), data[43], 44
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
        return cls(key, tuple(items), context_id)
