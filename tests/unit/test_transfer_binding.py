"""Envelopes are bound (H3): a locator opens only for the requester and the sender key it was sealed for.

H3: a requester copies another requester's public TaskPosted locator (and task hash) into its own post,
with its own sender key, hoping a provider runs the victim's task and seals the result to the copier.
The task locator's context binds the victim's address and key, and a provider opens a task locator only
with the event's requester and the envelope's sender key, so the copy does not open; the fetch fails
before a byte of the task is fetched.
"""

import hashlib

import pytest

from ichain.transfer import (
    ChunkHost,
    ContextInvalid,
    Envelope,
    EnvelopeError,
    KeyPair,
    TransferContext,
    TransferError,
    WrongKey,
    fetch,
    open_locator,
)

CHAIN = 31337
MARKET = "0x" + "4d" * 20
VICTIM = "0x" + "a1" * 20
ATTACKER = "0x" + "b2" * 20


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    running = ChunkHost(tmp_path_factory.mktemp("host"), chunk_size=1024)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def posted(host, tmp_path_factory):
    """The victim's TaskPosted locator for provider P: (provider keypair, victim keypair, locator bytes, task)."""
    provider, victim = KeyPair.generate(), KeyPair.generate()
    task = tmp_path_factory.mktemp("victim") / "task.tar"
    task.write_bytes(b"the victim's private task " * 200)
    context = TransferContext(CHAIN, MARKET, 0, "task-provider", VICTIM, victim.public_bytes)
    locator = Envelope(victim.public_bytes, (host.offer(task, provider.public_bytes, context),)).encode()
    return provider, victim, locator, task


def _provider_fetch(provider: KeyPair, locator: bytes, requester: str, dest):
    """What a provider does with a TaskPosted event: the event's requester, the envelope's sender key."""
    envelope = Envelope.decode(locator)
    return fetch(envelope.sealed[0], provider, envelope.context(CHAIN, MARKET, 0, "task-provider", requester), dest,
                 attempts=1)


def test_task_locator__event_requester_and_envelope_key__fetches_the_task(posted, tmp_path):
    provider, _, locator, task = posted

    result = _provider_fetch(provider, locator, VICTIM, tmp_path / "task.tar")

    assert result.sha256 == hashlib.sha256(task.read_bytes()).digest()


def test_h3_task_locator__copied_into_another_requesters_post__does_not_open(posted, tmp_path):
    provider, _, locator, _ = posted
    dest = tmp_path / "task.tar"

    with pytest.raises(WrongKey):
        _provider_fetch(provider, locator, ATTACKER, dest)

    assert not dest.exists() and not dest.with_name("task.tar.part").exists()


def test_h3_task_locator__copied_with_the_copiers_sender_key__does_not_open(posted, tmp_path):
    provider, _, locator, _ = posted
    copier = KeyPair.generate()
    rewrapped = Envelope(copier.public_bytes, Envelope.decode(locator).sealed).encode()

    with pytest.raises(WrongKey):
        _provider_fetch(provider, rewrapped, ATTACKER, tmp_path / "a.tar")
    with pytest.raises(WrongKey):  # even naming the victim as requester, the key still does not match
        _provider_fetch(provider, rewrapped, VICTIM, tmp_path / "b.tar")


@pytest.mark.parametrize("task_id", [1, 2**64])
def test_task_locator__opened_under_a_real_task_id__does_not_open(posted, task_id):
    provider, victim, locator, _ = posted
    sealed = Envelope.decode(locator).sealed[0]

    with pytest.raises(WrongKey):
        open_locator(sealed, provider, TransferContext(CHAIN, MARKET, task_id, "task-provider", VICTIM,
                                                        victim.public_bytes))


def test_result_locator__sealed_by_provider_for_requester__opens_only_under_providers_key(host, tmp_path):
    requester, provider, other = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    result = tmp_path / "result.tar"
    result.write_bytes(b"result" * 100)
    context = TransferContext(CHAIN, MARKET, 9, "result-requester", VICTIM, provider.public_bytes)
    sealed = host.offer(result, requester.public_bytes, context)

    assert open_locator(sealed, requester, context).plain_sha256 == hashlib.sha256(result.read_bytes()).digest()
    with pytest.raises(WrongKey):
        open_locator(sealed, requester, context.with_sender(other.public_bytes))
    with pytest.raises(WrongKey):
        open_locator(sealed, requester, TransferContext(CHAIN, MARKET, 9, "result-requester", ATTACKER,
                                                        provider.public_bytes))


# --- envelope v3 -------------------------------------------------------------------------------
def test_envelope_v3__round_trip__same_key_and_items():
    envelope = Envelope(b"k" * 32, (b"one", b"", b"x" * 300))

    raw = envelope.encode()

    assert raw[:3] == b"IC\x03" and raw[3:35] == b"k" * 32 and raw[35] == 3
    assert len(raw) == 36 + 3 * 2 + 3 + 300
    assert Envelope.decode(raw) == envelope


def test_envelope_v3__no_items__decodes_empty():
    assert Envelope.decode(Envelope(b"k" * 32, ()).encode()).sealed == ()


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "not an iChain envelope"),
        (b"XY\x03" + b"k" * 32 + b"\x00", "not an iChain envelope"),
        (b"IC\x02" + b"k" * 32 + bytes(8) + b"\x00", "unsupported envelope version 2"),
        (b"IC\x03" + b"k" * 20, "truncated"),
        (b"IC\x03" + b"k" * 32 + b"\x01", "truncated"),
        (b"IC\x03" + b"k" * 32 + b"\x01\x00\x05abc", "truncated"),
        (b"IC\x03" + b"k" * 32 + b"\x00junk", "trailing bytes"),
    ],
    ids=["empty", "magic", "v2", "short-header", "missing-item", "short-item", "trailing"],
)
def test_envelope_decode__malformed__raises_one_line_envelopeerror(raw, message):
    with pytest.raises(EnvelopeError, match=message) as info:
        Envelope.decode(raw)

    assert isinstance(info.value, TransferError) and "\n" not in str(info.value)


def test_envelope_context__bad_sender_key__raises_contextinvalid():
    with pytest.raises(ContextInvalid, match="sender key"):
        Envelope(b"short", ()).context(CHAIN, MARKET, 0, "task-provider", VICTIM)
