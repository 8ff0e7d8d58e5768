"""The sending end: encrypt a file (streaming) into chunk files and a manifest, ready to host."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ichain.transfer.crypto import (
    MAX_CHUNKS,
    TAG_SIZE,
    SenderSession,
    TransferContext,
    encrypt_chunk,
    new_sender_session,
)
from ichain.transfer.errors import HostError
from ichain.transfer.manifest import MAX_CHUNK_SIZE, Manifest, chunk_count
from ichain.transfer.receive import WRITE_PIECE

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MANIFEST_NAME = "manifest.json"


def chunk_name(index: int) -> str:
    """File name of chunk ``index`` inside a transfer folder."""
    return f"{index}.chunk"


def check_chunk_size(chunk_size: int) -> int:
    """Validate a chunk size (1 byte .. 64 MiB)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise HostError(f"chunk size must be an integer in 1..{MAX_CHUNK_SIZE}, got {chunk_size!r}")
    return chunk_size


@dataclass(frozen=True)
class Prepared:
    """An encrypted transfer on disk (or in memory), not yet sealed to an address."""

    session: SenderSession
    manifest: Manifest
    manifest_bytes: bytes
    plain_sha256: bytes

    def seal(self, address: str) -> bytes:
        """The sealed locator for this transfer hosted at ``address``."""
        return self.session.seal_locator(address, self.manifest.digest(), self.plain_sha256, self.manifest.size)


def _encrypt_stream(
    blocks: Iterator[bytes], size: int, session: SenderSession, chunk_size: int
) -> Iterator[tuple[int, bytes, bytes]]:
    total = chunk_count(size, chunk_size)
    if total > MAX_CHUNKS:
        raise HostError(f"{size} bytes at chunk size {chunk_size} is more than {MAX_CHUNKS} chunks")
    aead = session.content.aead()
    seen = 0
    for index in range(total):
        plaintext = next(blocks, b"")
        expected = min(chunk_size, size - index * chunk_size) if size else 0
        if len(plaintext) != expected:
            raise HostError("the source changed size while being encrypted")
        seen += len(plaintext)
        yield index, plaintext, encrypt_chunk(aead, session.content, index, total, plaintext)
    if seen != size or next(blocks, b""):
        raise HostError("the source changed size while being encrypted")


def encrypt_file(
    source: str | os.PathLike,
    recipient_public: bytes,
    context: TransferContext,
    out_folder: str | os.PathLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Prepared:
    """Encrypt ``source`` to ``recipient_public`` into ``out_folder/<transfer id>/`` (chunks + manifest).

    Streams: a few chunk buffers in memory, reused. The folder appears whole or not at all (written as
    ``.<id>.part`` and renamed).

    Raises:
        HostError: The source is unreadable or changed while being read; the folder is unwritable.
    """
    check_chunk_size(chunk_size)
    source = Path(source)
    session = new_sender_session(recipient_public, context)
    out_folder = Path(out_folder)
    tid = session.transfer_id.hex()
    staging = out_folder / f".{tid}.part"
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise HostError(f"cannot read {source}: {exc.strerror}") from None
    try:
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if not os.path.isfile(source):
                raise HostError(f"{source} is not a regular file")
            staging.mkdir(parents=True, mode=0o700)
            total = chunk_count(size, chunk_size)
            if total > MAX_CHUNKS:
                raise HostError(f"{size} bytes at chunk size {chunk_size} is more than {MAX_CHUNKS} chunks")
            hashes, plain_sha256 = _encrypt_chunks(handle, source, size, chunk_size, total, session, staging)
            if handle.read(1):
                raise HostError(f"{source} changed size while being encrypted")
            manifest = Manifest.build(session.transfer_id, chunk_size, size, hashes)
            manifest_bytes = manifest.to_bytes()
            (staging / MANIFEST_NAME).write_bytes(manifest_bytes)
        os.replace(staging, out_folder / tid)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise HostError(f"cannot write the encrypted chunks into {out_folder}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Prepared(session, manifest, manifest_bytes, plain_sha256)


def _encrypt_chunks(
    handle, source: Path, size: int, chunk_size: int, total: int, session: SenderSession, staging: Path
) -> tuple[list[bytes], bytes]:
    """Read and hash the plaintext in order (this thread) while workers seal, hash and write chunks.

    Memory stays bounded: ``workers + 1`` plaintext buffers circulate (reading waits for a free one)
    plus one sealed-chunk buffer per worker; buffers are reused, never reallocated per chunk.

    Returns:
        The SHA-256 of each encrypted chunk, in order, and the SHA-256 of the whole plaintext.
    """
    workers = max(1, min(4, (os.cpu_count() or 1) - 1))
    largest = min(chunk_size, size)
    aead = session.content.aead()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(workers + 1):
        free.put(bytearray(largest))
    local = threading.local()

    def seal(index: int, buffer: bytearray, length: int) -> bytes:
        try:
            out = getattr(local, "out", None)
            if out is None:
                out = local.out = bytearray(largest + TAG_SIZE)
            sealed = encrypt_chunk(aead, session.content, index, total, memoryview(buffer)[:length], out)
            with open(staging / chunk_name(index), "wb", buffering=0) as chunk_file:
                view = memoryview(sealed)
                while view:  # in pieces: see receive.WRITE_PIECE
                    view = view[chunk_file.write(view[:WRITE_PIECE]) :]
            return hashlib.sha256(sealed).digest()
        finally:
            free.put(buffer)

    plain_hash = hashlib.sha256()
    futures = []
    with ThreadPoolExecutor(workers, thread_name_prefix="ichain-seal") as pool:
        for index in range(total):
            expected = min(chunk_size, size - index * chunk_size)
            buffer = free.get()
            plaintext = memoryview(buffer)[:expected]
            if handle.readinto(plaintext) != expected:
                raise HostError(f"{source} changed size while being encrypted")
            plain_hash.update(plaintext)
            futures.append(pool.submit(seal, index, buffer, expected))
        hashes = [future.result() for future in futures]
    return hashes, plain_hash.digest()


def encrypt_bytes(
    data: bytes, recipient_public: bytes, context: TransferContext, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[Prepared, list[bytes]]:
    """Encrypt ``data`` in memory (tests, fuzzing, small payloads): the prepared transfer and its chunks."""
    check_chunk_size(chunk_size)
    session = new_sender_session(recipient_public, context)
    blocks = (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
    chunks = [sealed for _, _, sealed in _encrypt_stream(blocks, len(data), session, chunk_size)]
    manifest = Manifest.build(session.transfer_id, chunk_size, len(data), [hashlib.sha256(c).digest() for c in chunks])
    return Prepared(session, manifest, manifest.to_bytes(), hashlib.sha256(data).digest()), chunks
