"""Keys, contexts, sealed locators, and round trips at edge sizes (in-process and over real HTTP)."""

import hashlib
import os
import random
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ichain.errors import IChainError
from ichain.transfer import (
    ChunkHost,
    ContextInvalid,
    KeyFileError,
    KeyPair,
    Manifest,
    PublicKeyInvalid,
    Receiver,
    TransferContext,
    WrongKey,
    fetch,
    open_locator,
)
from ichain.transfer.send import encrypt_bytes

CHUNK = 64
MARKET = "0x" + "5a" * 20
REQUESTER = "0x" + "7e" * 20
SENDER = bytes(range(32))


@pytest.fixture(scope="module")
def recipient():
    return KeyPair.generate()


@pytest.fixture(scope="module")
def make_context():
    def make(chain_id=31337, market=MARKET, task_id=1, role="task-provider", requester=REQUESTER, sender_key=SENDER):
        return TransferContext(chain_id, market, task_id, role, requester, sender_key)

    return make


@pytest.fixture(scope="module")
def running_host(tmp_path_factory):
    host = ChunkHost(tmp_path_factory.mktemp("host"), chunk_size=CHUNK)
    host.start()
    yield host
    host.stop()


# --- keys ---------------------------------------------------------------------------------------
def test_load_or_create__missing_file__creates_0600_file_and_reloads_same_key(tmp_path):
    path = tmp_path / "keys" / "x25519.key"

    created = KeyPair.load_or_create(path)
    loaded = KeyPair.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(created.public_bytes) == 32
    assert loaded.public_bytes == created.public_bytes
    assert not path.with_name(path.name + ".part").exists()


def test_load_or_create__group_readable_file__raises_keyfileerror(tmp_path):
    path = tmp_path / "x25519.key"
    KeyPair.load_or_create(path)
    path.chmod(0o644)

    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyPair.load_or_create(path)


def test_load_or_create__wrong_length_file__raises_keyfileerror(tmp_path):
    path = tmp_path / "x25519.key"
    path.write_bytes(b"short")
    path.chmod(0o600)

    with pytest.raises(KeyFileError, match="5 bytes"):
        KeyPair.load_or_create(path)


@pytest.mark.parametrize("bad", [b"", b"\x01" * 31, b"\x01" * 33, "not bytes"], ids=["empty", "31", "33", "str"])
def test_offer__bad_recipient_key__raises_publickeyinvalid(running_host, tmp_path, make_context, bad):
    src = tmp_path / "f"
    src.write_bytes(b"x")

    with pytest.raises(PublicKeyInvalid):
        running_host.offer(src, bad, make_context())


def test_offer__low_order_recipient_key__raises_publickeyinvalid(running_host, tmp_path, make_context):
    src = tmp_path / "f"
    src.write_bytes(b"x")

    with pytest.raises(PublicKeyInvalid, match="degenerate"):
        running_host.offer(src, bytes(32), make_context())


# --- contexts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        dict(chain_id=0),
        dict(chain_id=-1),
        dict(chain_id=2**64),
        dict(chain_id="1"),
        dict(chain_id=True),
        dict(market="0x1234"),
        dict(market="5a" * 20),
        dict(market=None),
        dict(task_id=-1),
        dict(task_id=2**256),
        dict(task_id=1.5),
        dict(role=""),
        dict(role="Task"),
        dict(role="task provider"),
        dict(role="x" * 33),
        dict(requester="0x1234"),
        dict(requester=None),
        dict(requester="7e" * 20),
        dict(sender_key=b"\x01" * 31),
        dict(sender_key=b"\x01" * 33),
        dict(sender_key="01" * 32),
        dict(sender_key=None),
    ],
    ids=lambda f: "-".join(f"{k}={v!r}"[:24] for k, v in f.items()),
)
def test_transfercontext__bad_field__raises_one_line_contextinvalid(make_context, fields):
    with pytest.raises(ContextInvalid) as info:
        make_context(**fields)

    assert isinstance(info.value, IChainError)
    assert "\n" not in str(info.value)


def test_transfercontext__checksummed_or_bytes_market__same_binding(make_context):
    lower = make_context(market="0x" + "ab" * 20)
    upper = make_context(market="0x" + "AB" * 20)
    raw = make_context(market=bytes.fromhex("ab" * 20))

    assert lower == upper == raw
    assert lower.to_bytes() == raw.to_bytes()


def test_transfercontext__checksummed_or_bytes_requester__stored_lowercase_same_binding(make_context):
    upper = make_context(requester="0x" + "AB" * 20, sender_key=bytearray(SENDER))
    raw = make_context(requester=bytes.fromhex("ab" * 20))

    assert upper.requester == "0x" + "ab" * 20
    assert upper == raw and upper.to_bytes() == raw.to_bytes()
    assert isinstance(upper.sender_key, bytes)


@pytest.mark.parametrize("field", ["chain_id", "market", "task_id", "role", "requester", "sender_key"])
def test_transfercontext_to_bytes__any_field_changed__different_encoding(make_context, field):
    other = {
        "chain_id": dict(chain_id=2),
        "market": dict(market="0x" + "5b" * 20),
        "task_id": dict(task_id=2),
        "role": dict(role="failure-report"),
        "requester": dict(requester="0x" + "7f" * 20),
        "sender_key": dict(sender_key=bytes(32)),
    }[field]

    assert make_context().to_bytes() != make_context(**other).to_bytes()


def test_transfercontext_with_task_and_with_sender__change_only_that_field(make_context):
    context = make_context(task_id=5)

    assert context.with_task(0) == make_context(task_id=0)
    assert context.with_sender(bytes(32)) == make_context(task_id=5, sender_key=bytes(32))


# --- sealed locators ----------------------------------------------------------------------------
def test_seal_locator__same_file_twice__unlinkable_and_reveals_nothing(recipient, make_context):
    context = make_context()
    first, _ = encrypt_bytes(b"same", recipient.public_bytes, context, chunk_size=CHUNK)
    second, _ = encrypt_bytes(b"same", recipient.public_bytes, context, chunk_size=CHUNK)
    address = "http://198.51.100.7:41234"

    a, b = first.seal(address), second.seal(address)

    assert a != b and a[1:33] != b[1:33]  # fresh ephemeral key per transfer
    for secret in (address.encode(), first.session.transfer_id, first.manifest.digest(), first.plain_sha256,
                   recipient.public_bytes):
        assert secret not in a
    assert len(first.seal("http://h:1")) == len(a)  # padded: the address length does not show


def test_open_locator__recipient_key_and_context__returns_what_was_sealed(recipient, make_context):
    context = make_context(task_id=99, role="result-requester")
    prepared, _ = encrypt_bytes(b"payload", recipient.public_bytes, context, chunk_size=CHUNK)

    opened = open_locator(prepared.seal("http://127.0.0.1:9"), recipient, context)

    assert opened.address == "http://127.0.0.1:9"
    assert opened.transfer_id == prepared.session.transfer_id
    assert opened.manifest_hash == prepared.manifest.digest()
    assert opened.plain_sha256 == hashlib.sha256(b"payload").digest()
    assert opened.content.key == prepared.session.content.key


@pytest.mark.parametrize("field", ["chain_id", "market", "task_id", "role", "requester", "sender_key", "key"])
def test_open_locator__any_other_key_or_context_field__raises_wrongkey(recipient, make_context, field):
    context = make_context()
    prepared, _ = encrypt_bytes(b"payload", recipient.public_bytes, context, chunk_size=CHUNK)
    sealed = prepared.seal("http://127.0.0.1:9")
    other = {
        "chain_id": dict(chain_id=1),
        "market": dict(market="0x" + "5b" * 20),
        "task_id": dict(task_id=2),
        "role": dict(role="bundle-validator"),
        "requester": dict(requester="0x" + "7f" * 20),
        "sender_key": dict(sender_key=bytes(31) + b"\x01"),
        "key": {},
    }[field]
    keypair = KeyPair.generate() if field == "key" else recipient

    with pytest.raises(WrongKey):
        open_locator(sealed, keypair, make_context(**other))


# --- round trips at edge sizes ------------------------------------------------------------------
EDGE_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 37 * CHUNK + 5]


def _size_strategy():
    return st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 40 * CHUNK))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=_size_strategy(), seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([1, 16, CHUNK]))
def test_receiver__edge_sizes_any_arrival_order__identical_plaintext(recipient, make_context, tmp_path, size, seed, chunk):
    rng = random.Random(seed)
    data = rng.randbytes(size)
    context = make_context(task_id=seed)
    prepared, chunks = encrypt_bytes(data, recipient.public_bytes, context, chunk_size=chunk)
    opened = open_locator(prepared.seal("http://127.0.0.1:1"), recipient, context)
    manifest = Manifest.parse(prepared.manifest_bytes, opened)
    dest = tmp_path / f"out-{seed}-{size}-{chunk}"
    order = list(range(len(chunks)))
    rng.shuffle(order)

    with Receiver(opened, manifest, dest) as receiver:
        for index in order:
            receiver.accept(index, chunks[index])
        result = receiver.finish()

    assert manifest.chunks == max(1, -(-size // chunk))
    assert dest.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).digest()
    assert result.size == size
    dest.unlink()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=_size_strategy(), seed=st.integers(0, 2**32 - 1), concurrency=st.integers(1, 6))
def test_fetch__edge_sizes_over_http__identical_file_and_hash(
    running_host, recipient, make_context, tmp_path, size, seed, concurrency
):
    data = random.Random(seed).randbytes(size)
    src = tmp_path / f"src-{seed}"
    src.write_bytes(data)
    context = make_context(task_id=seed)
    sealed = running_host.offer(src, recipient.public_bytes, context)
    dest = tmp_path / f"dest-{seed}"

    result = fetch(sealed, recipient, context, dest, concurrency=concurrency)

    assert dest.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).digest()
    assert result.fetched == result.chunks == max(1, -(-size // CHUNK)) and result.reused == 0
    assert sorted(os.listdir(tmp_path)) == sorted([src.name, dest.name])  # no .part/.state left
    assert running_host.progress(sealed.transfer_id)["served"] == [1] * result.chunks
    running_host.remove(sealed.transfer_id)
    src.unlink()
    dest.unlink()
