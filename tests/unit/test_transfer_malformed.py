"""Malformed input: every kind of tampering is refused with a one-line error and releases nothing.

Each case runs the real path: a real ChunkHost serving files (tampered on its disk, or forged by a
hostile sender with a self-consistent manifest), fetched over HTTP by ``fetch``. Every case checks
the error class, that the destination never appears, and that whatever sits in ``DEST.part`` is
authentic plaintext (each chunk region is either untouched zeros or exactly the original bytes).
"""

import hashlib
import json
import os
import random
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from ichain.errors import IChainError
from ichain.transfer import (
    ChunkAfterFinal,
    ChunkHost,
    DestinationError,
    HostUnreachable,
    KeyPair,
    LocatorInvalid,
    Manifest,
    ManifestInvalid,
    Receiver,
    TamperedChunk,
    TransferContext,
    TransferError,
    TransferNotFound,
    TransferTooLarge,
    WrongKey,
    fetch,
    open_locator,
)
from ichain.transfer.crypto import encrypt_chunk, new_sender_session
from ichain.transfer.manifest import MAX_MANIFEST_BYTES
from ichain.transfer.send import MANIFEST_NAME, chunk_name

CHUNK = 256
SIZE = 5 * CHUNK + 7  # 6 chunks, the last one short
MARKET = "0x" + "c3" * 20
REQUESTER = "0x" + "7e" * 20
SENDER = bytes(range(32))


@dataclass
class Sent:
    sealed: bytes
    data: bytes
    context: TransferContext
    folder: Path  # the host's folder of this transfer
    chunk_size: int = CHUNK


class Lab:
    """One recipient, one real chunk host, and helpers to send, forge and fetch."""

    def __init__(self, host: ChunkHost, recipient: KeyPair, workdir: Path):
        self.host = host
        self.recipient = recipient
        self.workdir = workdir
        self.dest = workdir / "dest.bin"
        self.rng = random.Random(7)

    def context(self, task_id=1, role="task-provider", chain_id=31337, market=MARKET) -> TransferContext:
        return TransferContext(chain_id, market, task_id, role, REQUESTER, SENDER)

    def send(self, size=SIZE, task_id=1) -> Sent:
        data = self.rng.randbytes(size)
        src = self.workdir / f"src-{self.rng.random()}"
        src.write_bytes(data)
        context = self.context(task_id)
        sealed = self.host.offer(src, self.recipient.public_bytes, context)
        return Sent(sealed, data, context, self.host.folder / sealed.transfer_id)

    def forge(
        self, *, plan=None, fields=None, manifest_bytes=None, plain_sha256=None, locator_size=None, key_from_other=False
    ) -> Sent:
        """A hostile sender: chunks sealed per ``plan`` [(index, total, plaintext)], manifest self-consistent."""
        data = self.rng.randbytes(SIZE)
        context = self.context()
        session = new_sender_session(self.recipient.public_bytes, context)
        keys = new_sender_session(self.recipient.public_bytes, context).content if key_from_other else session.content
        pieces = [data[i : i + CHUNK] for i in range(0, SIZE, CHUNK)]
        plan = plan(pieces) if plan else [(i, len(pieces), p) for i, p in enumerate(pieces)]
        chunks = [encrypt_chunk(keys.aead(), keys, i, total, p) for i, total, p in plan]
        spec = dict(transfer_id=session.transfer_id, chunk_size=CHUNK, size=SIZE,
                    chunk_hashes=[hashlib.sha256(c).digest() for c in chunks])
        if fields:
            fields(spec)
        manifest = Manifest.build(**spec)
        raw = manifest_bytes(manifest) if manifest_bytes else manifest.to_bytes()
        folder = self.host.folder / session.transfer_id.hex()
        folder.mkdir()
        for index, chunk in enumerate(chunks):
            (folder / chunk_name(index)).write_bytes(chunk)
        (folder / MANIFEST_NAME).write_bytes(raw)
        self.host.serve_existing()
        sealed = session.seal_locator(
            self.host.address, hashlib.sha256(raw).digest(), plain_sha256 or hashlib.sha256(data).digest(),
            spec["size"] if locator_size is None else locator_size,
        )
        return Sent(sealed, data, context, folder)

    def fetch(self, sealed, context, keypair=None, **options):
        options.setdefault("attempts", 2)
        options.setdefault("backoff", 0.01)
        options.setdefault("stall_timeout", 5)
        return fetch(sealed, keypair or self.recipient, context, self.dest, **options)


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CASES = {}


def case(expected):
    def register(fn):
        CASES[fn.__name__] = (expected, fn)
        return fn

    return register


# --- the sealed locator -------------------------------------------------------------------------
@case(WrongKey)
def locator_bit_flip_in_ciphertext(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(_flip(sent.sealed, 60), sent.context)


@case(WrongKey)
def locator_bit_flip_in_ephemeral_key(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(_flip(sent.sealed, 5), sent.context)


@case(WrongKey)
def locator_bit_flip_in_tag(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(_flip(sent.sealed, len(sent.sealed) - 1), sent.context)


@case(LocatorInvalid)
def locator_truncated_by_one_byte(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed[:-1], sent.context)


@case(LocatorInvalid)
def locator_truncated_to_half(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed[: len(sent.sealed) // 2], sent.context)


@case(WrongKey)
def locator_extended_by_one_block(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(bytes(sent.sealed) + bytes(64), sent.context)


@case(LocatorInvalid)
def locator_unknown_version(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(b"\x01" + sent.sealed[1:], sent.context)


@case(LocatorInvalid)
def locator_empty(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(b"", sent.context)


@case(WrongKey)
def locator_of_another_task_replayed(lab):
    sent = lab.send()
    other = lab.send(task_id=2)
    return sent, lambda: lab.fetch(other.sealed, sent.context)


# --- the wrong key or context -------------------------------------------------------------------
@case(WrongKey)
def wrong_recipient_key(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, sent.context, keypair=KeyPair.generate())


@case(WrongKey)
def wrong_chain_id(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, lab.context(chain_id=1))


@case(WrongKey)
def wrong_market(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, lab.context(market="0x" + "c4" * 20))


@case(WrongKey)
def wrong_task_id(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, lab.context(task_id=2))


@case(WrongKey)
def wrong_role(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, lab.context(role="result-requester"))


# --- the manifest on the host -------------------------------------------------------------------
def _edit(path: Path, fn) -> None:
    path.write_bytes(fn(path.read_bytes()))


@case(ManifestInvalid)
def manifest_truncated(lab):
    sent = lab.send()
    _edit(sent.folder / MANIFEST_NAME, lambda b: b[:-10])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def manifest_bit_flip(lab):
    sent = lab.send()
    _edit(sent.folder / MANIFEST_NAME, lambda b: _flip(b, len(b) // 2))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def manifest_empty(lab):
    sent = lab.send()
    _edit(sent.folder / MANIFEST_NAME, lambda b: b"")
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def manifest_of_another_transfer(lab):
    sent = lab.send()
    other = lab.send()
    shutil.copy(other.folder / MANIFEST_NAME, sent.folder / MANIFEST_NAME)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def manifest_oversized(lab):
    sent = lab.send()
    _edit(sent.folder / MANIFEST_NAME, lambda b: b + b" " * (MAX_MANIFEST_BYTES + 1))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TransferNotFound)
def manifest_missing(lab):
    sent = lab.send()
    (sent.folder / MANIFEST_NAME).unlink()
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


# --- the chunks on the host ---------------------------------------------------------------------
@case(TamperedChunk)
def chunk_bit_flip(lab):
    sent = lab.send()
    _edit(sent.folder / chunk_name(2), lambda b: _flip(b, 17))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunk_truncated(lab):
    sent = lab.send()
    _edit(sent.folder / chunk_name(3), lambda b: b[:100])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunk_tag_stripped(lab):
    sent = lab.send()
    _edit(sent.folder / chunk_name(1), lambda b: b[:-16])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunk_oversized(lab):
    sent = lab.send()
    _edit(sent.folder / chunk_name(0), lambda b: b + os.urandom(1 << 16))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunks_reordered(lab):
    sent = lab.send()
    a, b = sent.folder / chunk_name(1), sent.folder / chunk_name(2)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunk_duplicated(lab):
    sent = lab.send()
    shutil.copy(sent.folder / chunk_name(1), sent.folder / chunk_name(2))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TransferNotFound)
def chunk_dropped(lab):
    sent = lab.send()
    (sent.folder / chunk_name(4)).unlink()
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def chunk_from_another_transfer(lab):
    sent = lab.send()
    other = lab.send()
    shutil.copy(other.folder / chunk_name(2), sent.folder / chunk_name(2))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def final_chunk_emptied(lab):
    sent = lab.send()
    _edit(sent.folder / chunk_name(5), lambda b: b"")
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


# --- a hostile sender (manifest and locator consistent with what it serves) ---------------------
@case(TamperedChunk)
def forged_final_flag_early(lab):
    # Chunk 2 is sealed as the final one of 3, then more chunks follow.
    sent = lab.forge(plan=lambda p: [(i, 3 if i == 2 else len(p), x) for i, x in enumerate(p)])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def forged_truncated_stream(lab):
    # The classic truncation: serve the first 3 chunks of a 6-chunk stream as if they were all of it.
    def fields(spec):
        spec["size"] = 3 * CHUNK
        spec["chunk_hashes"] = spec["chunk_hashes"][:3]

    sent = lab.forge(fields=fields)
    sent.data = sent.data[: 3 * CHUNK]
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def forged_chunk_sealed_at_another_index(lab):
    sent = lab.forge(plan=lambda p: [(0 if i == 1 else i, len(p), x) for i, x in enumerate(p)])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def forged_chunks_reordered_before_hashing(lab):
    sent = lab.forge(plan=lambda p: [({1: 2, 2: 1}.get(i, i), len(p), p[{1: 2, 2: 1}.get(i, i)]) for i in range(len(p))])
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def forged_chunks_under_another_key(lab):
    sent = lab.forge(key_from_other=True)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(TamperedChunk)
def forged_manifest_wrong_chunk_hash(lab):
    def fields(spec):
        spec["chunk_hashes"][3] = hashlib.sha256(b"something else").digest()

    sent = lab.forge(fields=fields)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_lists_chunk_after_final(lab):
    def fields(spec):
        spec["chunk_hashes"].append(hashlib.sha256(b"extra").digest())

    sent = lab.forge(fields=fields)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_size_differs_from_locator(lab):
    sent = lab.forge(fields=lambda spec: spec.update(size=SIZE - 1), locator_size=SIZE)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_root_wrong(lab):
    def raw(manifest):
        doc = json.loads(manifest.to_bytes())
        doc["root"] = "00" * 32
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    sent = lab.forge(manifest_bytes=raw)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_chunk_size_zero(lab):
    def raw(manifest):
        doc = json.loads(manifest.to_bytes())
        doc["chunk_size"] = 0
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    sent = lab.forge(manifest_bytes=raw)
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_not_canonical(lab):
    sent = lab.forge(manifest_bytes=lambda m: json.dumps(json.loads(m.to_bytes()), sort_keys=True).encode())
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_manifest_names_another_transfer(lab):
    sent = lab.forge(fields=lambda spec: spec.update(transfer_id=os.urandom(16)))
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


@case(ManifestInvalid)
def forged_whole_hash_wrong(lab):
    sent = lab.forge(plain_sha256=hashlib.sha256(b"a different file").digest())
    return sent, lambda: lab.fetch(sent.sealed, sent.context)


# --- chunks handed straight to the receiver -----------------------------------------------------
def _receiver(lab, sent) -> Receiver:
    opened = open_locator(sent.sealed, lab.recipient, sent.context)
    manifest_bytes = (sent.folder / MANIFEST_NAME).read_bytes()
    return Receiver(opened, Manifest.parse(manifest_bytes, opened), lab.dest)


def _deliver_then(lab, sent, extra):
    def run():
        with _receiver(lab, sent) as receiver:
            for index in range(receiver.manifest.chunks - 1):
                receiver.accept(index, (sent.folder / chunk_name(index)).read_bytes())
            extra(receiver)
            receiver.finish()

    return run


@case(ChunkAfterFinal)
def chunk_after_final(lab):
    sent = lab.send()
    last = 5

    def extra(receiver):
        receiver.accept(last, (sent.folder / chunk_name(last)).read_bytes())
        receiver.accept(last + 1, (sent.folder / chunk_name(last)).read_bytes())

    return sent, _deliver_then(lab, sent, extra)


@case(TamperedChunk)
def chunk_delivered_twice(lab):
    sent = lab.send()
    return sent, _deliver_then(lab, sent, lambda r: r.accept(0, (sent.folder / chunk_name(0)).read_bytes()))


@case(TamperedChunk)
def chunk_negative_index(lab):
    sent = lab.send()
    return sent, _deliver_then(lab, sent, lambda r: r.accept(-1, (sent.folder / chunk_name(0)).read_bytes()))


# --- destination, limits, reachability ----------------------------------------------------------
@case(DestinationError)
def destination_is_a_folder(lab):
    sent = lab.send()
    lab.dest.mkdir()

    def run():
        try:
            lab.fetch(sent.sealed, sent.context)
        finally:
            lab.dest.rmdir()

    return sent, run


@case(TransferTooLarge)
def over_the_size_limit(lab):
    sent = lab.send()
    return sent, lambda: lab.fetch(sent.sealed, sent.context, max_size=SIZE - 1)


@case(HostUnreachable)
def host_gone(lab):
    context = lab.context()
    session = new_sender_session(lab.recipient.public_bytes, context)
    sealed = session.seal_locator(f"http://127.0.0.1:{_closed_port()}", bytes(32), bytes(32), 1)
    return Sent(sealed, b"", context, lab.workdir), lambda: lab.fetch(sealed, context)


# --- the suite ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with ChunkHost(tmp_path_factory.mktemp("host"), chunk_size=CHUNK) as running:
        yield running


@pytest.fixture(scope="module")
def recipient():
    return KeyPair.generate()


@pytest.fixture
def lab(host, recipient, tmp_path):
    return Lab(host, recipient, tmp_path)


def test_suite__case_count__at_least_28():
    assert len(CASES) >= 28


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input__case__refused_one_line_nothing_released(lab, name):
    expected, build = CASES[name]
    sent, run = build(lab)

    with pytest.raises(TransferError) as info:
        run()

    assert type(info.value) is expected, f"{name}: {type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, IChainError)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 300
    assert not lab.dest.exists(), "the destination appeared"
    _assert_part_authentic(lab.dest, sent)


def _assert_part_authentic(dest: Path, sent: Sent) -> None:
    """Every chunk region of DEST.part is untouched (zeros) or exactly the original plaintext."""
    part = dest.with_name(dest.name + ".part")
    if not part.exists():
        return
    written = part.read_bytes()
    for offset in range(0, len(written), sent.chunk_size):
        region = written[offset : offset + sent.chunk_size]
        original = sent.data[offset : offset + sent.chunk_size]
        assert region == original or not any(region), f"unauthenticated bytes at offset {offset}"


@pytest.mark.parametrize("forged", [False, True], ids=["offered", "forged-untampered"])
def test_malformed_input__untampered_control__fetches_identical_bytes(lab, forged):
    # The harness itself must let an honest transfer through, or the suite above proves nothing.
    sent = lab.forge() if forged else lab.send()

    result = lab.fetch(sent.sealed, sent.context)

    assert lab.dest.read_bytes() == sent.data
    assert result.sha256 == hashlib.sha256(sent.data).digest()
