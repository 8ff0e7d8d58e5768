"""The manifest: sizes, chunk count, the hash of every encrypted chunk and of the whole list.

Its canonical JSON bytes are hashed (SHA-256) into the sealed locator, so the receiver checks the
manifest before trusting any number in it, then checks every chunk against it as it arrives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ichain.transfer.crypto import MAX_CHUNKS, TAG_SIZE, OpenedLocator
from ichain.transfer.errors import ManifestInvalid

MANIFEST_VERSION = 1
MAX_CHUNK_SIZE = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
_KEYS = {"chunk_size", "chunks", "hashes", "root", "size", "transfer", "v"}


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks a ``size``-byte plaintext takes (an empty file is one empty, final chunk)."""
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True)
class Manifest:
    """What the receiver checks every chunk against.

    Attributes:
        transfer_id: The 16-byte transfer id (the same as in the locator).
        chunk_size: Plaintext bytes per chunk (the last may be shorter).
        size: Plaintext size in bytes.
        chunk_hashes: SHA-256 of each encrypted chunk, in order.
        root: SHA-256 of the concatenated chunk hashes (the hash of the whole encrypted stream's chunks).
    """

    transfer_id: bytes
    chunk_size: int
    size: int
    chunk_hashes: tuple[bytes, ...]
    root: bytes

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.chunk_hashes)

    def plain_len(self, index: int) -> int:
        """Plaintext length of chunk ``index``."""
        return max(0, min(self.chunk_size, self.size - index * self.chunk_size))

    def cipher_len(self, index: int) -> int:
        """Encrypted length of chunk ``index`` (plaintext + GCM tag)."""
        return self.plain_len(index) + TAG_SIZE

    @property
    def cipher_size(self) -> int:
        """Total encrypted bytes."""
        return self.size + TAG_SIZE * self.chunks

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): exactly what is hashed."""
        return json.dumps(
            {
                "v": MANIFEST_VERSION,
                "transfer": self.transfer_id.hex(),
                "chunk_size": self.chunk_size,
                "size": self.size,
                "chunks": self.chunks,
                "hashes": [h.hex() for h in self.chunk_hashes],
                "root": self.root.hex(),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes` (what the sealed locator carries)."""
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def build(cls, transfer_id: bytes, chunk_size: int, size: int, chunk_hashes: list[bytes]) -> Manifest:
        """A manifest for hashes computed while encrypting."""
        hashes_ = tuple(chunk_hashes)
        return cls(transfer_id, chunk_size, size, hashes_, hashlib.sha256(b"".join(hashes_)).digest())

    @classmethod
    def parse(cls, data: bytes, opened: OpenedLocator) -> Manifest:
        """Check ``data`` against the opened locator, then parse it strictly.

        Raises:
            ManifestInvalid: Wrong hash, not canonical, or any field out of its limits.
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
        if hashlib.sha256(data).digest() != opened.manifest_hash:
            raise ManifestInvalid("manifest hash does not match the locator (altered or truncated manifest)")
        # From here the bytes are the sender's own; a hostile sender is still checked.
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ManifestInvalid("manifest is not valid JSON") from None
        if not isinstance(doc, dict) or set(doc) != _KEYS or doc.get("v") != MANIFEST_VERSION:
            raise ManifestInvalid("manifest fields or version are not the expected ones")
        chunk_size, size, chunks = doc["chunk_size"], doc["size"], doc["chunks"]
        for name, value in (("chunk_size", chunk_size), ("size", size), ("chunks", chunks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ManifestInvalid(f"manifest {name} is not a non-negative integer")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ManifestInvalid(f"manifest chunk size {chunk_size} is outside 1..{MAX_CHUNK_SIZE}")
        if size != opened.size:
            raise ManifestInvalid(f"manifest size {size} differs from the locator's {opened.size}")
        if chunks != chunk_count(size, chunk_size) or chunks > MAX_CHUNKS:
            raise ManifestInvalid(f"manifest chunk count {chunks} does not fit size {size} at chunk size {chunk_size}")
        hashes_ = doc["hashes"]
        if not isinstance(hashes_, list) or len(hashes_) != chunks:
            raise ManifestInvalid("manifest hash list length differs from its chunk count")
        try:
            transfer_id = bytes.fromhex(doc["transfer"])
            chunk_hashes = tuple(bytes.fromhex(h) for h in hashes_)
            root = bytes.fromhex(doc["root"])
        except (TypeError, ValueError):
            raise ManifestInvalid("manifest holds a malformed hex value") from None
        if transfer_id != opened.transfer_id:
            raise ManifestInvalid("manifest belongs to another transfer")
        if any(len(h) != 32 for h in chunk_hashes) or len(root) != 32:
            raise ManifestInvalid("manifest hashes are not 32 bytes each")
        manifest = cls(transfer_id, chunk_size, size, chunk_hashes, root)
        if hashlib.sha256(b"".join(chunk_hashes)).digest() != root:
            raise ManifestInvalid("manifest root does not match its chunk hashes")
        if manifest.to_bytes() != bytes(data):
            raise ManifestInvalid("manifest is not in canonical form")
        return manifest
