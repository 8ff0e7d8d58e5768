"""Keys, context binding, sealed locators and the per-chunk streaming AEAD.

Construction (HPKE-like, base mode, with the ``cryptography`` primitives):

* Each transfer draws a fresh ephemeral X25519 key ``e`` and a random 16-byte transfer id.
  ``shared = X25519(e, recipient)``; every key comes from HKDF-SHA256 with
  ``salt = SHA256("ichain/transfer/v1/salt" || e.pub || recipient.pub)`` and an ``info`` that holds a label
  and the :class:`TransferContext` (chain id, market, task id, role, requester address, sender key), so a
  different key, recipient or context derives unrelated keys: a locator copied into another requester's
  post, or re-wrapped under another sender key, does not open.
* The **locator** (address, transfer id, manifest hash, plaintext hash and size) is sealed with
  AES-256-GCM under the locator key (used once, so a zero nonce is safe), padded to a multiple of
  64 bytes; its associated data binds the version, ``e.pub``, the recipient and the context. The sealed
  form is ``version(1) || e.pub(32) || ciphertext``: random-looking bytes for anyone else.
* The **content** is encrypted chunk by chunk (STREAM construction): AES-256-GCM under the content key
  (its HKDF info also binds the transfer id), nonce ``prefix(7) || index(4) || final(1)``, associated
  data ``label || transfer id || index || total || final``. Reordering, duplication, dropping,
  truncation and extension all change the nonce or associated data a chunk is checked under.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ichain.transfer.errors import (
    ContextInvalid,
    KeyFileError,
    LocatorInvalid,
    PublicKeyInvalid,
    TamperedChunk,
    WrongKey,
)

VERSION = 2  # 2: the context binds the requester and the sender key
TAG_SIZE = 16
TRANSFER_ID_SIZE = 16
MAX_CHUNKS = 2**32 - 1
MAX_ADDRESS = 1024
_LOCATOR_PAD = 64
_LOCATOR_FIXED = TRANSFER_ID_SIZE + 32 + 32 + 8 + 2  # transfer id, manifest hash, plaintext hash, size, len
_SEALED_MIN = 1 + 32 + _LOCATOR_PAD + TAG_SIZE
_SEALED_MAX = 1 + 32 + _LOCATOR_FIXED + MAX_ADDRESS + _LOCATOR_PAD + TAG_SIZE
_ROLE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ZERO_NONCE = bytes(12)
_HAS_INTO = hasattr(AESGCM, "decrypt_into") and hasattr(AESGCM, "encrypt_into")  # cryptography >= 45


class KeyPair:
    """An X25519 key pair; the 32-byte public key is what a worker registers on chain.

    Args:
        private_key: The private key.
    """

    def __init__(self, private_key: X25519PrivateKey):
        self._private = private_key
        self.public_bytes: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random key pair."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        """The key pair of a raw 32-byte private key."""
        if len(raw) != 32:
            raise KeyFileError(f"an X25519 private key is 32 bytes, got {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(bytes(raw)))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike) -> KeyPair:
        """Load the key pair at ``path``, creating it (mode 0600, written atomically) if missing.

        Args:
            path: The key file (32 raw bytes).

        Raises:
            KeyFileError: The file is malformed, unreadable, or readable by group/others.
        """
        path = Path(path)
        if path.exists():
            return cls.load(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyFileError(f"cannot create the key folder {path.parent}: {exc.strerror}") from None
        keypair = cls.generate()
        raw = keypair._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        part = path.with_name(path.name + ".part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # umask or an old .part must not widen it
                os.write(fd, raw)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(part, path)
        except OSError as exc:
            raise KeyFileError(f"cannot write the key file {path}: {exc.strerror}") from None
        return keypair

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyPair:
        """Load an existing key file (see :meth:`load_or_create`)."""
        path = Path(path)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            if info.st_mode & 0o077:
                raise KeyFileError(
                    f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read the key file {path}: {exc.strerror}") from None
        if len(raw) != 32:
            raise KeyFileError(f"key file {path} is {len(raw)} bytes; an X25519 private key file is 32 bytes")
        return cls.from_private_bytes(raw)

    def exchange(self, peer_public: bytes) -> bytes:
        """X25519 with ``peer_public``; raises :class:`PublicKeyInvalid` for a degenerate point."""
        return _exchange(self._private, peer_public)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public_bytes.hex()})"


def _public_key(raw: bytes) -> X25519PublicKey:
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) != 32:
        size = len(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else type(raw).__name__
        raise PublicKeyInvalid(f"an X25519 public key is 32 bytes, got {size}")
    return X25519PublicKey.from_public_bytes(bytes(raw))


def _exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    try:
        shared = private.exchange(_public_key(peer_public))
    except ValueError:  # low-order point: the shared secret would be all zeros
        raise PublicKeyInvalid("the public key is a degenerate X25519 point") from None
    return shared


@dataclass(frozen=True)
class TransferContext:
    """What a transfer is for and between whom; bound into every key so a locator only opens in its own context.

    Args:
        chain_id: The chain id (e.g. 31337 for anvil).
        market: The TaskMarket address (``0x`` + 40 hex digits, any case, or 20 raw bytes; stored lowercase).
        task_id: The task id (0 for the task locator a requester seals before its post: the id is not known yet).
        role: What the file is and who it is for: ``"task-provider"``, ``"bundle-validator"``,
            ``"result-requester"``, ``"failure-report"`` (``[a-z][a-z0-9-]{0,31}``).
        requester: The task's requester (``0x`` + 40 hex digits, any case, or 20 raw bytes; stored lowercase).
            Bound so a locator copied into another requester's post does not open there.
        sender_key: The 32-byte X25519 public key of the party that seals (the envelope's sender key).
            Bound so a locator re-wrapped under another sender key does not open.
    """

    chain_id: int
    market: str
    task_id: int
    role: str
    requester: str
    sender_key: bytes

    def __post_init__(self) -> None:
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int) or not 0 < self.chain_id < 2**64:
            raise ContextInvalid(f"chain id must be an integer in 1..2^64-1, got {self.chain_id!r}")
        object.__setattr__(self, "market", _address("market", self.market))
        if isinstance(self.task_id, bool) or not isinstance(self.task_id, int) or not 0 <= self.task_id < 2**256:
            raise ContextInvalid(f"task id must be an integer in 0..2^256-1, got {self.task_id!r}")
        if not isinstance(self.role, str) or not _ROLE_RE.match(self.role):
            raise ContextInvalid(f"role must match [a-z][a-z0-9-]{{0,31}}, got {self.role!r}")
        object.__setattr__(self, "requester", _address("requester", self.requester))
        key = self.sender_key
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != 32:
            size = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray, memoryview)) else type(key).__name__
            raise ContextInvalid(f"sender key must be a 32-byte X25519 public key, got {size}")
        object.__setattr__(self, "sender_key", bytes(key))

    def to_bytes(self) -> bytes:
        """The canonical encoding bound into the key derivation (every field, fixed widths)."""
        role = self.role.encode()
        return (
            b"ichain/transfer/v2/context\x00"
            + self.chain_id.to_bytes(8, "big")
            + bytes.fromhex(self.market[2:])
            + self.task_id.to_bytes(32, "big")
            + bytes([len(role)])
            + role
            + bytes.fromhex(self.requester[2:])
            + self.sender_key
        )

    def with_task(self, task_id: int) -> TransferContext:
        """The same context for another task id (e.g. 0, the id a task locator is sealed under)."""
        return replace(self, task_id=task_id)

    def with_sender(self, sender_key: bytes) -> TransferContext:
        """The same context with another sender key (e.g. the key read from an envelope or a report)."""
        return replace(self, sender_key=sender_key)


def _address(name: str, value: object) -> str:
    """A 0x address in lowercase, from any-case hex or 20 raw bytes; raises ContextInvalid otherwise."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 20:
        value = "0x" + bytes(value).hex()
    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise ContextInvalid(f"{name} must be a 0x-prefixed 20-byte address, got {value!r:.60}")
    return value.lower()


def _hkdf(shared: bytes, salt: bytes, label: bytes, context: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=label + b"\x00" + context).derive(shared)


@dataclass(frozen=True)
class ContentKeys:
    """The per-transfer chunk keys (sender and receiver derive the same)."""

    transfer_id: bytes
    key: bytes
    nonce_prefix: bytes

    def aead(self) -> AESGCM:
        """The AES-256-GCM instance for this transfer's chunks."""
        return AESGCM(self.key)


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes, context: TransferContext):
    salt = hashlib.sha256(b"ichain/transfer/v1/salt" + ephemeral_public + recipient_public).digest()
    ctx = context.to_bytes()
    locator_key = _hkdf(shared, salt, b"ichain/transfer/v1/locator", ctx)
    return salt, ctx, locator_key


def _content_keys(shared: bytes, salt: bytes, ctx: bytes, transfer_id: bytes) -> ContentKeys:
    material = _hkdf(shared, salt, b"ichain/transfer/v1/content", ctx + transfer_id, length=32 + 7)
    return ContentKeys(transfer_id=transfer_id, key=material[:32], nonce_prefix=material[32:])


@dataclass(frozen=True)
class SenderSession:
    """Everything a sender needs for one transfer; made by :func:`new_sender_session`."""

    recipient_public: bytes
    context: TransferContext
    ephemeral_public: bytes
    content: ContentKeys
    _locator_key: bytes
    _aad: bytes

    @property
    def transfer_id(self) -> bytes:
        """The random 16-byte transfer id."""
        return self.content.transfer_id

    def seal_locator(self, address: str, manifest_hash: bytes, plain_sha256: bytes, size: int) -> bytes:
        """The locator, sealed to the recipient: ``version || e.pub || AES-GCM(...)``."""
        plaintext = encode_locator(address, self.transfer_id, manifest_hash, plain_sha256, size)
        sealed = AESGCM(self._locator_key).encrypt(_ZERO_NONCE, plaintext, self._aad)
        return bytes([VERSION]) + self.ephemeral_public + sealed


def new_sender_session(recipient_public: bytes, context: TransferContext) -> SenderSession:
    """Draw a fresh ephemeral key and transfer id and derive the keys for one transfer to ``recipient_public``."""
    if isinstance(recipient_public, (bytearray, memoryview)):
        recipient_public = bytes(recipient_public)
    if not isinstance(context, TransferContext):
        raise ContextInvalid(f"context must be a TransferContext, got {type(context).__name__}")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = _exchange(ephemeral, recipient_public)
    salt, ctx, locator_key = _derive(shared, ephemeral_public, recipient_public, context)
    transfer_id = os.urandom(TRANSFER_ID_SIZE)
    return SenderSession(
        recipient_public=recipient_public,
        context=context,
        ephemeral_public=ephemeral_public,
        content=_content_keys(shared, salt, ctx, transfer_id),
        _locator_key=locator_key,
        _aad=bytes([VERSION]) + ephemeral_public + recipient_public + ctx,
    )


def encode_locator(address: str, transfer_id: bytes, manifest_hash: bytes, plain_sha256: bytes, size: int) -> bytes:
    """The locator's plaintext encoding, zero-padded to a multiple of 64 bytes (hides the address length)."""
    raw_address = address.encode("ascii")
    if not 0 < len(raw_address) <= MAX_ADDRESS:
        raise LocatorInvalid(f"address must be 1..{MAX_ADDRESS} ASCII characters")
    body = transfer_id + manifest_hash + plain_sha256 + struct.pack(">QH", size, len(raw_address)) + raw_address
    return body + bytes(-len(body) % _LOCATOR_PAD)


@dataclass(frozen=True)
class OpenedLocator:
    """A locator opened by its recipient: where to fetch, what to expect, and the content keys."""

    address: str
    transfer_id: bytes
    manifest_hash: bytes
    plain_sha256: bytes
    size: int
    content: ContentKeys


def open_locator(sealed: bytes, keypair: KeyPair, context: TransferContext) -> OpenedLocator:
    """Open a sealed locator with the recipient's key pair and the expected context.

    Raises:
        LocatorInvalid: Wrong length or version.
        WrongKey: Not sealed to this key in this context, or altered.
    """
    if not isinstance(sealed, (bytes, bytearray, memoryview)):
        raise LocatorInvalid(f"a sealed locator is bytes, got {type(sealed).__name__}")
    sealed = bytes(sealed)
    if not isinstance(context, TransferContext):
        raise ContextInvalid(f"context must be a TransferContext, got {type(context).__name__}")
    if not _SEALED_MIN <= len(sealed) <= _SEALED_MAX or (len(sealed) - 1 - 32 - TAG_SIZE) % _LOCATOR_PAD:
        raise LocatorInvalid(f"a sealed locator of {len(sealed)} bytes is malformed (truncated or padded)")
    if sealed[0] != VERSION:
        raise LocatorInvalid(f"sealed locator version {sealed[0]} is not supported (expected {VERSION})")
    ephemeral_public = sealed[1:33]
    try:
        shared = keypair.exchange(ephemeral_public)
    except PublicKeyInvalid:
        raise WrongKey("the locator does not open with this key and context (degenerate ephemeral key)") from None
    salt, ctx, locator_key = _derive(shared, ephemeral_public, keypair.public_bytes, context)
    aad = bytes([VERSION]) + ephemeral_public + keypair.public_bytes + ctx
    try:
        plaintext = AESGCM(locator_key).decrypt(_ZERO_NONCE, sealed[33:], aad)
    except InvalidTag:
        raise WrongKey("the locator does not open with this key and context (not ours, or altered)") from None
    transfer_id = plaintext[:16]
    manifest_hash = plaintext[16:48]
    plain_sha256 = plaintext[48:80]
    size, address_len = struct.unpack(">QH", plaintext[80:90])
    address = plaintext[90 : 90 + address_len]
    padding = plaintext[90 + address_len :]
    # Authenticated, but the sender could still be hostile: check the structure strictly.
    well_formed = 0 < address_len <= MAX_ADDRESS and len(address) == address_len
    if not well_formed or any(padding) or len(padding) >= _LOCATOR_PAD:
        raise LocatorInvalid("the locator's contents are malformed")
    try:
        address_text = address.decode("ascii")
    except UnicodeDecodeError:
        raise LocatorInvalid("the locator's address is not ASCII") from None
    if not address_text.isprintable() or not address_text.startswith("http://"):
        raise LocatorInvalid("the locator's address is not an http:// URL")
    return OpenedLocator(
        address=address_text,
        transfer_id=transfer_id,
        manifest_hash=manifest_hash,
        plain_sha256=plain_sha256,
        size=size,
        content=_content_keys(shared, salt, ctx, transfer_id),
    )


def chunk_nonce_aad(content: ContentKeys, index: int, total: int) -> tuple[bytes, bytes]:
    """The nonce and associated data chunk ``index`` of ``total`` is sealed under."""
    if not 0 <= index < total <= MAX_CHUNKS:
        raise TamperedChunk(f"chunk index {index} is outside 0..{total - 1}")
    final = b"\x01" if index == total - 1 else b"\x00"
    idx = index.to_bytes(4, "big")
    nonce = content.nonce_prefix + idx + final
    aad = b"ichain/transfer/v1/chunk\x00" + content.transfer_id + idx + total.to_bytes(4, "big") + final
    return nonce, aad


# What the chunk functions read: the bytes themselves or a view into a reused buffer.
BytesLike = bytes | bytearray | memoryview


@overload
def encrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, plaintext: BytesLike, out: None = None
) -> bytes: ...
@overload
def encrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, plaintext: BytesLike, out: bytearray
) -> bytes | memoryview: ...
def encrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, plaintext: BytesLike, out: bytearray | None = None
) -> bytes | memoryview:
    """Seal chunk ``index`` of ``total`` (the last one carries the final flag).

    Args:
        out: Optional scratch buffer (at least ``len(plaintext) + 16`` bytes); the result is then a view of it.
    """
    nonce, aad = chunk_nonce_aad(content, index, total)
    if out is not None and _HAS_INTO:
        view = memoryview(out)[: len(plaintext) + TAG_SIZE]
        aead.encrypt_into(nonce, plaintext, aad, view)
        return view
    return aead.encrypt(nonce, plaintext, aad)


@overload
def decrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, ciphertext: BytesLike, out: None = None
) -> bytes: ...
@overload
def decrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, ciphertext: BytesLike, out: bytearray
) -> bytes | memoryview: ...
def decrypt_chunk(
    aead: AESGCM, content: ContentKeys, index: int, total: int, ciphertext: BytesLike, out: bytearray | None = None
) -> bytes | memoryview:
    """Open chunk ``index`` of ``total``; raises :class:`TamperedChunk` unless it authenticates at that place.

    Args:
        out: Optional scratch buffer (at least ``len(ciphertext) - 16`` bytes) to decrypt into, saving an
            allocation per chunk; the result is then a view of it. On failure its contents are garbage.
    """
    nonce, aad = chunk_nonce_aad(content, index, total)
    try:
        if out is not None and _HAS_INTO and len(ciphertext) >= TAG_SIZE:
            view = memoryview(out)[: len(ciphertext) - TAG_SIZE]
            aead.decrypt_into(nonce, ciphertext, aad, view)
            return view
        return aead.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise TamperedChunk(f"chunk {index} fails authentication (altered, moved, or not from this transfer)") from None
