"""Resume: a fetch interrupted at a random chunk completes later with the identical hash and never
fetches a chunk it had already verified (counted on the real host, per chunk)."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ichain.transfer import (
    ChunkHost,
    DestinationError,
    DirectTransport,
    HostUnreachable,
    KeyPair,
    TransferContext,
    fetch,
)
from ichain.transfer.receive import recorded_chunks

CHUNK = 16 * 1024
CHUNKS = 24
SIZE = CHUNKS * CHUNK - 123
TRIALS = 60
MARKET = "0x" + "11" * 20
REQUESTER = "0x" + "22" * 20
SENDER = bytes(range(32))


class Interrupted(Exception):
    """Raised from the progress callback: the fetch stops as on Ctrl-C."""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with ChunkHost(tmp_path_factory.mktemp("host"), chunk_size=CHUNK) as running:
        yield running


@pytest.fixture(scope="module")
def recipient():
    return KeyPair.generate()


@pytest.fixture
def offer(host, recipient, tmp_path):
    """Factory: offer fresh random bytes; returns (sealed, data, context)."""
    counter = iter(range(10**6))

    def make(rng, task_id=None, on=None):
        data = rng.randbytes(SIZE)
        src = tmp_path / f"src-{next(counter)}"
        src.write_bytes(data)
        context = TransferContext(31337, MARKET, task_id if task_id is not None else rng.randrange(2**32), "task-provider",
                                  REQUESTER, SENDER)
        sealed = (on or host).offer(src, recipient.public_bytes, context)
        src.unlink()
        return sealed, data, context

    return make


def _stop_after(verified: int):
    def on_progress(progress):
        if progress.fetched >= verified:
            raise Interrupted()

    return on_progress


def _settled(host, transfer_id) -> list[int]:
    """The host's per-chunk request counts once requests already on the wire have been handled."""
    before = host.progress(transfer_id)["served"]
    while True:
        time.sleep(0.05)
        now = host.progress(transfer_id)["served"]
        if now == before:
            return now
        before = now


def _left_over(dest) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name + "."))


def test_fetch__interrupted_at_random_chunk__resumes_identical_and_refetches_no_good_chunk(host, recipient, offer, tmp_path):
    rng = random.Random(5150)
    reused_total = 0

    for trial in range(TRIALS):
        sealed, data, context = offer(rng)
        dest = tmp_path / f"dest-{trial}"
        stop_at = rng.randrange(0, CHUNKS)
        concurrency = rng.randint(1, 6)

        with pytest.raises(Interrupted):
            fetch(sealed, recipient, context, dest, concurrency=concurrency, progress=_stop_after(stop_at))
        good = recorded_chunks(dest)
        served_before = _settled(host, sealed.transfer_id)
        result = fetch(sealed, recipient, context, dest, concurrency=rng.randint(1, 6))
        served = host.progress(sealed.transfer_id)["served"]

        assert not dest.with_name(dest.name + ".part").exists() and _left_over(dest) == []
        assert result.sha256 == hashlib.sha256(data).digest() and dest.read_bytes() == data, f"trial {trial}"
        assert len(good) >= stop_at, f"trial {trial}: {len(good)} recorded, stopped after {stop_at}"
        assert result.reused == len(good) and result.fetched == CHUNKS - len(good), f"trial {trial}"
        assert all(served[i] == 1 for i in good), f"trial {trial}: a verified chunk was fetched again"
        assert all(served[i] >= 1 for i in range(CHUNKS))
        assert all(served[i] - served_before[i] == (0 if i in good else 1) for i in range(CHUNKS))
        reused_total += len(good)
        dest.unlink()

    assert reused_total > TRIALS * CHUNKS // 4  # the interruptions did land mid-transfer


def test_fetch__host_stopped_mid_transfer_then_restarted__resumes_without_refetching(recipient, offer, tmp_path):
    rng = random.Random(77)
    for trial in range(10):
        first = ChunkHost(tmp_path / "host2", transport=DirectTransport(), chunk_size=CHUNK)
        first.start()
        port = first.bound[1]
        sealed, data, context = offer(rng, on=first)
        dest = tmp_path / f"dest-{trial}"
        stop_at = rng.randrange(1, CHUNKS - 1)

        def stop_host(progress, stop_at=stop_at, first=first):
            if progress.fetched >= stop_at and first.address:
                first.stop()

        with pytest.raises(HostUnreachable):
            fetch(sealed, recipient, context, dest, concurrency=3, progress=stop_host, attempts=2, backoff=0.01)
        good = recorded_chunks(dest)
        served_first = first.progress(sealed.transfer_id)["served"]
        second = ChunkHost(tmp_path / "host2", transport=DirectTransport(port=port), chunk_size=CHUNK)
        second.start()  # same folder, same port: the sealed locator on chain still points here
        try:
            result = fetch(sealed, recipient, context, dest, concurrency=3)
            served_second = second.progress(sealed.transfer_id)["served"]
        finally:
            second.stop()

        assert result.sha256 == hashlib.sha256(data).digest() and dest.read_bytes() == data
        assert len(good) >= stop_at and result.reused == len(good)
        assert all(served_first[i] == 1 and served_second[i] == 0 for i in good)
        assert all(served_second[i] == 1 for i in range(CHUNKS) if i not in good)
        dest.unlink()


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from ichain.transfer import KeyPair, TransferContext, fetch
    sealed, key, dest, task_id, stop_at = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    def crash(progress):
        if progress.fetched >= stop_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no flush: a real crash
    fetch(sealed, KeyPair.from_private_bytes(key), TransferContext(31337, "%s", task_id, "task-provider", "%s", bytes(range(32))), dest,
          concurrency=4, progress=crash)
    """
    % (MARKET, REQUESTER)
)


def test_fetch__process_killed_mid_transfer__resumes_identical_without_refetching(host, recipient, offer, tmp_path):
    from cryptography.hazmat.primitives import serialization

    raw_key = recipient._private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    rng = random.Random(99)
    for trial in range(3):
        task_id = 10_000 + trial
        sealed, data, context = offer(rng, task_id=task_id)
        dest = tmp_path / f"dest-{trial}"
        stop_at = rng.randrange(2, CHUNKS - 2)

        crashed = subprocess.run(
            [sys.executable, "-c", CRASHER, bytes(sealed).hex(), raw_key.hex(), str(dest), str(task_id), str(stop_at)],
            capture_output=True, text=True, timeout=120,
        )
        good = recorded_chunks(dest)
        result = fetch(sealed, recipient, context, dest)
        served = host.progress(sealed.transfer_id)["served"]

        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-500:]
        assert len(good) >= stop_at and result.reused == len(good)
        assert result.sha256 == hashlib.sha256(data).digest() and dest.read_bytes() == data
        assert all(served[i] == 1 for i in good)


def test_fetch__part_file_altered_between_runs__altered_chunk_refetched(host, recipient, offer, tmp_path):
    sealed, data, context = offer(random.Random(3))
    dest = tmp_path / "dest"
    with pytest.raises(Interrupted):
        fetch(sealed, recipient, context, dest, concurrency=1, progress=_stop_after(10))
    good = sorted(recorded_chunks(dest))
    victim = good[3]
    with open(dest.with_name("dest.part"), "r+b") as part:
        part.seek(victim * CHUNK + 5)
        part.write(b"\xff")

    result = fetch(sealed, recipient, context, dest)

    assert dest.read_bytes() == data
    assert result.reused == len(good) - 1
    assert host.progress(sealed.transfer_id)["served"][victim] == 2


def test_fetch__resume_false__fetches_everything_again(host, recipient, offer, tmp_path):
    sealed, data, context = offer(random.Random(4))
    dest = tmp_path / "dest"
    with pytest.raises(Interrupted):
        fetch(sealed, recipient, context, dest, concurrency=2, progress=_stop_after(8))

    result = fetch(sealed, recipient, context, dest, resume=False)

    assert dest.read_bytes() == data and result.reused == 0 and result.fetched == CHUNKS


def test_fetch__leftover_part_of_another_transfer__starts_fresh(host, recipient, offer, tmp_path):
    rng = random.Random(6)
    first, _, first_context = offer(rng)
    second, data, second_context = offer(rng)
    dest = tmp_path / "dest"
    with pytest.raises(Interrupted):
        fetch(first, recipient, first_context, dest, concurrency=2, progress=_stop_after(12))

    result = fetch(second, recipient, second_context, dest)

    assert dest.read_bytes() == data and result.reused == 0


def test_fetch__interrupted__destination_never_appears_and_part_is_private(host, recipient, offer, tmp_path):
    sealed, _, context = offer(random.Random(8))
    dest = tmp_path / "dest"

    with pytest.raises(Interrupted):
        fetch(sealed, recipient, context, dest, concurrency=2, progress=_stop_after(5))

    assert not dest.exists()
    assert _left_over(dest) == ["dest.part", "dest.part.state"]
    assert os.stat(dest.with_name("dest.part")).st_mode & 0o077 == 0


def test_fetch__second_fetch_to_same_destination_meanwhile__raises_destinationerror(host, recipient, offer, tmp_path):
    sealed, data, context = offer(random.Random(9))
    dest = tmp_path / "dest"
    outcome = {}

    def meanwhile(progress):
        if progress.fetched == 3 and "second" not in outcome:
            try:
                fetch(sealed, recipient, context, dest)
                outcome["second"] = "completed"
            except DestinationError as exc:
                outcome["second"] = str(exc)

    result = fetch(sealed, recipient, context, dest, concurrency=1, progress=meanwhile)

    assert outcome["second"].startswith("another fetch is writing")
    assert dest.read_bytes() == data and result.sha256 == hashlib.sha256(data).digest()
