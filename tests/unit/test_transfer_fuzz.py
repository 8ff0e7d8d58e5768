"""Mutation fuzz of the receive path: >= 10,000 mutated transfers, none accepted, nothing unauthentic released.

In-process for speed (small chunks, no HTTP): the same path ``fetch`` runs after the network, i.e.
``open_locator`` -> ``Manifest.parse`` -> ``Receiver.accept`` per delivered chunk -> ``Receiver.finish``,
writing real ``.part`` and state files. Each mutated transfer applies 1-3 random mutations to the
sealed locator, the manifest bytes, the delivered chunks (flip, truncate, extend, swap, duplicate,
drop, move, splice from another transfer, add after final), or the key/context used to open it.
"""

import os
import random
from collections import Counter

import pytest

from ichain.transfer import KeyPair, Manifest, Receiver, TransferContext, TransferError, open_locator
from ichain.transfer.send import encrypt_bytes

MUTATED_TRANSFERS = 10_000
BASES = 50
SEED = int(os.environ.get("ICHAIN_FUZZ_SEED", "20261125"))
MARKET = "0x" + "7e" * 20
REQUESTER = "0x" + "9d" * 20
SENDER = bytes(range(32))


def _context(task_id=3, role="result-requester", chain_id=31337, market=MARKET, requester=REQUESTER,
             sender_key=SENDER):
    return TransferContext(chain_id, market, task_id, role, requester, sender_key)


class Transfer:
    """One honest transfer: what the receiver would get, plus the original plaintext."""

    def __init__(self, rng: random.Random, recipient: KeyPair):
        self.chunk_size = rng.choice([1, 7, 16, 32])
        size = rng.choice([0, 1, self.chunk_size - 1, self.chunk_size, self.chunk_size + 1, rng.randint(0, 12 * self.chunk_size)])
        self.data = rng.randbytes(max(0, size))
        self.context = _context(task_id=rng.randint(0, 2**20))
        prepared, self.chunks = encrypt_bytes(self.data, recipient.public_bytes, self.context, chunk_size=self.chunk_size)
        self.sealed = prepared.seal(f"http://127.0.0.1:{rng.randint(1, 65535)}")
        self.manifest = prepared.manifest_bytes


def _flip(rng, data: bytes) -> bytes:
    if not data:
        return b"\x01"
    out = bytearray(data)
    out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(rng, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))] if data else b""


def _extend(rng, data: bytes) -> bytes:
    return data + rng.randbytes(rng.randint(1, 20))


def _splice(rng, data: bytes) -> bytes:
    at = rng.randint(0, len(data))
    if rng.random() < 0.5 and data:
        return data[:at] + data[at + 1 :]
    return data[:at] + bytes([rng.randrange(256)]) + data[at:]


BYTE_MUTATORS = [_flip, _truncate, _extend, _splice]


def mutate(rng, case: dict, other: Transfer, recipient_other: KeyPair) -> str:
    """Apply one random mutation to ``case`` in place; returns its kind."""
    deliveries = case["deliveries"]
    kind = rng.choice(
        ["locator", "manifest", "chunk-bytes", "swap", "duplicate", "drop", "move", "foreign-chunk",
         "after-final", "empty-chunk", "wrong-key", "wrong-context"]
    )
    if kind == "locator":
        case["sealed"] = rng.choice(BYTE_MUTATORS)(rng, case["sealed"])
    elif kind == "manifest":
        case["manifest"] = rng.choice(BYTE_MUTATORS)(rng, case["manifest"])
    elif kind == "chunk-bytes" and deliveries:
        at = rng.randrange(len(deliveries))
        index, data = deliveries[at]
        deliveries[at] = (index, rng.choice(BYTE_MUTATORS)(rng, data))
    elif kind == "swap" and len(deliveries) >= 2:
        a, b = rng.sample(range(len(deliveries)), 2)
        (ia, da), (ib, db) = deliveries[a], deliveries[b]
        deliveries[a], deliveries[b] = (ia, db), (ib, da)
    elif kind == "duplicate" and len(deliveries) >= 2:
        a, b = rng.sample(range(len(deliveries)), 2)
        deliveries[b] = (deliveries[b][0], deliveries[a][1])
    elif kind == "drop" and deliveries:
        deliveries.pop(rng.randrange(len(deliveries)))
    elif kind == "move" and deliveries:
        at = rng.randrange(len(deliveries))
        index, data = deliveries[at]
        deliveries[at] = (rng.choice([i for i in range(-1, len(deliveries) + 2) if i != index]), data)
    elif kind == "foreign-chunk" and deliveries and other.chunks:
        at = rng.randrange(len(deliveries))
        index = deliveries[at][0]
        deliveries[at] = (index, other.chunks[min(index, len(other.chunks) - 1)] if index >= 0 else other.chunks[0])
    elif kind == "after-final":
        source = rng.choice(deliveries)[1] if deliveries else b"\x00" * 17
        deliveries.insert(rng.randint(0, len(deliveries)), (case["chunk_count"] + rng.randint(0, 2), source))
    elif kind == "empty-chunk" and deliveries:
        at = rng.randrange(len(deliveries))
        deliveries[at] = (deliveries[at][0], b"")
    elif kind == "wrong-key":
        case["keypair"] = recipient_other
    elif kind == "wrong-context":
        field = rng.choice(["chain_id", "market", "task_id", "role", "requester", "sender_key"])
        ctx = case["context"]
        changed = {
            "chain_id": dict(chain_id=ctx.chain_id + 1),
            "market": dict(market="0x" + "7f" * 20),
            "task_id": dict(task_id=ctx.task_id + 1),
            "role": dict(role="result-validator"),
            "requester": dict(requester="0x" + "9e" * 20),
            "sender_key": dict(sender_key=bytes(32 - 1) + b"\x01"),
        }[field]
        case["context"] = _context(**{**dict(chain_id=ctx.chain_id, market=ctx.market, task_id=ctx.task_id,
                                             role=ctx.role, requester=ctx.requester, sender_key=ctx.sender_key),
                                      **changed})
    else:
        return mutate(rng, case, other, recipient_other)  # not applicable here: draw again
    return kind


def receive(case: dict, dest) -> bytes:
    """The receive path after the network; returns the released file's bytes (only on acceptance)."""
    opened = open_locator(case["sealed"], case["keypair"], case["context"])
    manifest = Manifest.parse(case["manifest"], opened)
    with Receiver(opened, manifest, dest, resume=False) as receiver:
        for index, data in case["deliveries"]:
            receiver.accept(index, data)
        receiver.finish()
    return dest.read_bytes()


def _unauthentic_regions(dest, transfer: Transfer) -> int:
    part = dest.with_name(dest.name + ".part")
    if not part.exists():
        return 0
    written = part.read_bytes()
    bad = 0
    for offset in range(0, len(written), transfer.chunk_size):
        region = written[offset : offset + transfer.chunk_size]
        if any(region) and region != transfer.data[offset : offset + transfer.chunk_size]:
            bad += 1
    return bad


def _clean(dest) -> None:
    for suffix in ("", ".part", ".part.state"):
        try:
            os.unlink(f"{dest}{suffix}")
        except FileNotFoundError:
            pass


@pytest.fixture(scope="module")
def recipient():
    return KeyPair.generate()


@pytest.fixture(scope="module")
def transfers(recipient):
    rng = random.Random(SEED)
    return [Transfer(rng, recipient) for _ in range(BASES)]


def _honest_case(transfer: Transfer, recipient: KeyPair, rng: random.Random) -> dict:
    deliveries = list(enumerate(transfer.chunks))
    rng.shuffle(deliveries)  # parallel fetches arrive in any order: that is not a mutation
    return dict(sealed=transfer.sealed, manifest=transfer.manifest, deliveries=deliveries, keypair=recipient,
                context=transfer.context, chunk_count=len(transfer.chunks))


def _same(a: dict, b: dict) -> bool:
    return (a["sealed"], a["manifest"], sorted(a["deliveries"]), a["keypair"], a["context"]) == (
        b["sealed"], b["manifest"], sorted(b["deliveries"]), b["keypair"], b["context"])


def test_receive__honest_transfers_in_any_order__all_accepted(transfers, recipient, tmp_path):
    rng = random.Random(SEED + 1)
    dest = tmp_path / "out"

    for transfer in transfers:
        released = receive(_honest_case(transfer, recipient, rng), dest)
        assert released == transfer.data
        _clean(dest)


def test_receive__10000_mutated_transfers__none_accepted_nothing_unauthentic_released(transfers, recipient, tmp_path):
    rng = random.Random(SEED + 2)
    other_key = KeyPair.generate()
    dest = tmp_path / "out"
    kinds, outcomes = Counter(), Counter()
    accepted, unexpected, released_unauthentic = [], [], 0

    for n in range(MUTATED_TRANSFERS):
        transfer = transfers[n % len(transfers)]
        honest = _honest_case(transfer, recipient, rng)
        case = dict(honest, deliveries=list(honest["deliveries"]))
        applied = [mutate(rng, case, transfers[(n + 1) % len(transfers)], other_key) for _ in range(rng.randint(1, 3))]
        while _same(case, honest):  # a mutation that changed nothing (e.g. a swap undone) is no test
            applied.append(mutate(rng, case, transfers[(n + 1) % len(transfers)], other_key))
        kinds.update(applied)
        try:
            receive(case, dest)
            accepted.append((n, applied))
        except TransferError as exc:
            outcomes[type(exc).__name__] += 1
            assert "\n" not in str(exc)
        except Exception as exc:  # anything else is a bug: a traceback instead of a one-line error
            unexpected.append((n, applied, repr(exc)))
        assert not dest.exists() or (n, applied) in accepted
        released_unauthentic += _unauthentic_regions(dest, transfer)
        _clean(dest)

    print(f"mutations: {dict(kinds)}; outcomes: {dict(outcomes)}")
    assert accepted == []
    assert unexpected == []
    assert released_unauthentic == 0
    assert sum(outcomes.values()) == MUTATED_TRANSFERS
    assert all(count >= 300 for count in kinds.values()) and len(kinds) == 12  # every kind well exercised
