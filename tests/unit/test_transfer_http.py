"""Hosting and fetching over real HTTP: parallel isolated streams, stalls, resets, retries, progress.

Faults come from a real HTTP proxy between fetcher and host (a Transport whose ``publish`` puts the
proxy in front of the chunk host), so the production code runs unchanged.
"""

import asyncio
import hashlib
import io
import json
import random
import socket
import threading
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from ichain.transfer import (
    ChunkHost,
    DirectTransport,
    FetchProgress,
    HostError,
    HostUnreachable,
    KeyPair,
    Stalled,
    TransferContext,
    TransferError,
    TransferNotFound,
    TransportError,
    default_concurrency,
    fetch,
    progress_bar,
)
from ichain.transfer.crypto import new_sender_session

CHUNK = 32 * 1024
MARKET = "0x" + "42" * 20


class FaultyProxy:
    """A real HTTP proxy on 127.0.0.1:0 applying ``policy(path, attempt) -> action`` per request.

    Actions: "forward", "stall" (half the body, then silence), "reset" (half the body, then abort),
    "503".
    """

    def __init__(self, upstream: str, policy):
        self.upstream = upstream
        self.policy = policy
        self.attempts: Counter = Counter()
        self.actions: Counter = Counter()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.address = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    async def _handle(self, request):
        self.attempts[request.path] += 1
        action = self.policy(request.path, self.attempts[request.path])
        self.actions[action] += 1
        if action == "503":
            return web.Response(status=503)
        async with aiohttp.ClientSession() as session:
            async with session.get(self.upstream + request.path) as upstream:
                status, body = upstream.status, await upstream.read()
        if action == "forward" or status != 200:
            return web.Response(status=status, body=body)
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if action == "stall":
            try:
                await asyncio.wait_for(self._stop.wait(), 30)
            except asyncio.TimeoutError:
                pass
        if request.transport is not None:
            request.transport.abort()  # "reset" (and the end of a stall)
        return response

    def close(self):
        self.loop.call_soon_threadsafe(self._stop.set)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class ProxiedTransport(DirectTransport):
    """Direct transport that publishes the host behind a FaultyProxy and records stream keys."""

    def __init__(self, policy=lambda path, attempt: "forward", **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.keys: list[str] = []
        self.proxy = None

    def publish(self, host, port):
        self.proxy = FaultyProxy(f"http://{host}:{port}", self.policy)
        return self.proxy.address

    def unpublish(self):
        self.proxy.close()

    def connector(self, isolation_key):
        self.keys.append(isolation_key)
        return super().connector(isolation_key)


@pytest.fixture(scope="module")
def recipient():
    return KeyPair.generate()


@pytest.fixture
def context():
    return TransferContext(31337, MARKET, 1, "result-requester", "0x" + "7e" * 20, bytes(range(32)))


@pytest.fixture
def source(tmp_path):
    """Factory: a file of ``size`` random bytes; returns (path, data)."""

    def make(size, seed=0):
        data = random.Random(seed).randbytes(size)
        path = tmp_path / f"src-{seed}-{size}"
        path.write_bytes(data)
        return path, data

    return make


@pytest.fixture
def proxied_host(tmp_path):
    """Factory: a started ChunkHost behind a FaultyProxy with ``policy``."""
    hosts = []

    def make(policy=lambda path, attempt: "forward"):
        transport = ProxiedTransport(policy)
        host = ChunkHost(tmp_path / f"host-{len(hosts)}", transport=transport, chunk_size=CHUNK)
        host.start()
        hosts.append(host)
        return host, transport

    yield make
    for host in hosts:
        host.stop()


class _Terminal(io.StringIO):
    """Captures output like a terminal would receive it (click hides bars on non-terminals)."""

    def isatty(self):
        return True


def _chunk_path(path):
    return "/c/" in path


def test_fetch__concurrency_n__n_streams_with_distinct_isolation_keys(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host()
    path, data = source(12 * CHUNK)
    sealed = host.offer(path, recipient.public_bytes, context)

    result = fetch(sealed, recipient, context, tmp_path / "out", transport=transport, concurrency=5)

    chunk_streams = [k for k in transport.keys if not k.endswith("-m-0")]
    assert result.sha256 == hashlib.sha256(data).digest()
    assert len(chunk_streams) == 5 and len(set(transport.keys)) == len(transport.keys)


def test_fetch__host_stalls_on_first_attempts__retries_on_fresh_streams_and_completes(
    proxied_host, source, recipient, context, tmp_path
):
    stall_first = lambda path, attempt: "stall" if _chunk_path(path) and path.endswith(("/c/1", "/c/4")) and attempt == 1 else "forward"
    host, transport = proxied_host(stall_first)
    path, data = source(8 * CHUNK + 3)
    sealed = host.offer(path, recipient.public_bytes, context)
    seen: list[FetchProgress] = []

    started = time.monotonic()
    result = fetch(sealed, recipient, context, tmp_path / "out", transport=transport, concurrency=3,
                   stall_timeout=0.4, backoff=0.01, progress=seen.append)

    assert (tmp_path / "out").read_bytes() == data and result.fetched == 9
    assert transport.proxy.actions["stall"] == 2 and seen[-1].retries == 2
    assert any(k.endswith("-1") for k in transport.keys)  # a renewed stream: a new isolation key
    assert time.monotonic() - started < 10


def test_fetch__host_stalls_every_attempt__raises_stalled(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host(lambda path, attempt: "stall" if path.endswith("/c/2") else "forward")
    path, _ = source(4 * CHUNK)
    sealed = host.offer(path, recipient.public_bytes, context)

    started = time.monotonic()
    with pytest.raises(Stalled, match="no byte of chunk 2 for 0.3 s"):
        fetch(sealed, recipient, context, tmp_path / "out", transport=transport, stall_timeout=0.3, attempts=3,
              backoff=0.01)

    assert transport.proxy.attempts[f"/t/{sealed.transfer_id}/c/2"] == 3
    assert time.monotonic() - started < 10
    assert not (tmp_path / "out").exists()


def test_fetch__connections_reset_at_random__completes_identical(proxied_host, source, recipient, context, tmp_path):
    rng = random.Random(1)
    flaky = lambda path, attempt: "reset" if _chunk_path(path) and attempt < 4 and rng.random() < 0.4 else "forward"
    host, transport = proxied_host(flaky)
    path, data = source(30 * CHUNK + 11, seed=2)
    sealed = host.offer(path, recipient.public_bytes, context)

    result = fetch(sealed, recipient, context, tmp_path / "out", transport=transport, concurrency=4, backoff=0.01)

    assert result.sha256 == hashlib.sha256(data).digest() and (tmp_path / "out").read_bytes() == data
    assert transport.proxy.actions["reset"] >= 5


def test_fetch__host_answers_503__retries_then_raises_hostunreachable(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host(lambda path, attempt: "503" if path.endswith("/manifest") else "forward")
    path, _ = source(100)
    sealed = host.offer(path, recipient.public_bytes, context)

    with pytest.raises(HostUnreachable, match="HTTP 503"):
        fetch(sealed, recipient, context, tmp_path / "out", transport=transport, attempts=3, backoff=0.01)

    assert transport.proxy.attempts[f"/t/{sealed.transfer_id}/manifest"] == 3


def test_fetch__progress_callback__per_chunk_states_and_json_snapshot(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host()
    path, data = source(6 * CHUNK + 1)
    sealed = host.offer(path, recipient.public_bytes, context)
    snapshots, states = [], set()

    def on_progress(progress):
        snapshots.append(json.loads(json.dumps(progress.snapshot())))
        states.update(progress.states)

    fetch(sealed, recipient, context, tmp_path / "out", transport=transport, concurrency=2, progress=on_progress)

    first, last = snapshots[0], snapshots[-1]
    assert first["map"] == "p" * 7 and first["done_bytes"] == 0
    assert last["finished"] and last["fraction"] == 1.0 and last["map"] == "v" * 7
    assert last["done_bytes"] == len(data) and last["counts"] == {"verified": 7}
    assert {"pending", "fetching", "verified"} <= states
    fractions = [s["fraction"] for s in snapshots]
    assert fractions == sorted(fractions)


def test_progress_bar__fetch__draws_bar_to_100_percent(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host()
    path, _ = source(5 * CHUNK)
    sealed = host.offer(path, recipient.public_bytes, context)
    out = _Terminal()

    with progress_bar("result", file=out) as on_progress:
        fetch(sealed, recipient, context, tmp_path / "out", transport=transport, progress=on_progress)

    assert "result" in out.getvalue() and "100%" in out.getvalue()


def test_host_progress__after_fetch__counts_requests_and_bytes(proxied_host, source, recipient, context, tmp_path):
    host, transport = proxied_host()
    path, _ = source(3 * CHUNK)
    sealed = host.offer(path, recipient.public_bytes, context)

    result = fetch(sealed, recipient, context, tmp_path / "out", transport=transport)
    snapshot = json.loads(json.dumps(host.progress(sealed.transfer_id)))

    assert snapshot["served"] == [1, 1, 1] and snapshot["complete"] and snapshot["manifest_requests"] == 1
    assert snapshot["bytes_served"] == result.cipher_size == 3 * CHUNK + 3 * 16


def test_host_remove__then_fetch__raises_transfernotfound(tmp_path, source, recipient, context):
    path, _ = source(10)
    with ChunkHost(tmp_path / "host") as host:
        sealed = host.offer(path, recipient.public_bytes, context)
        host.remove(sealed.transfer_id)

        with pytest.raises(TransferNotFound):
            fetch(sealed, recipient, context, tmp_path / "out")
        with pytest.raises(TransferNotFound):
            host.progress(sealed.transfer_id)


def test_host_restart__same_folder__still_serves_earlier_transfers(tmp_path, source, recipient, context):
    path, data = source(3 * CHUNK + 5)
    first = ChunkHost(tmp_path / "host", chunk_size=CHUNK)
    first.start()
    port = first.bound[1]
    sealed = first.offer(path, recipient.public_bytes, context)
    first.stop()

    with ChunkHost(tmp_path / "host", transport=DirectTransport(port=port)) as second:
        assert second.transfers() == [sealed.transfer_id]
        fetch(sealed, recipient, context, tmp_path / "out")

    assert (tmp_path / "out").read_bytes() == data


def test_offer__host_not_started__raises_hosterror(tmp_path, source, recipient, context):
    path, _ = source(10)

    with pytest.raises(HostError, match="start the chunk host"):
        ChunkHost(tmp_path / "host").offer(path, recipient.public_bytes, context)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_offer__unreadable_source__raises_hosterror_and_leaves_no_folder(tmp_path, recipient, context, kind):
    source = tmp_path / "source"
    if kind == "folder":
        source.mkdir()
    with ChunkHost(tmp_path / "host") as host:
        with pytest.raises(HostError, match="cannot read"):
            host.offer(source, recipient.public_bytes, context)

        assert host.transfers() == [] and list((tmp_path / "host").iterdir()) == []


def test_host_start__port_in_use__raises_hosterror(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(HostError, match=f"127.0.0.1:{port}"):
            ChunkHost(tmp_path / "host", transport=DirectTransport(port=port)).start()


def test_fetch__called_inside_running_event_loop__completes(tmp_path, source, recipient, context):
    path, data = source(2 * CHUNK)
    with ChunkHost(tmp_path / "host", chunk_size=CHUNK) as host:
        sealed = host.offer(path, recipient.public_bytes, context)

        async def handler():  # e.g. a web request handler calling the sync API
            return fetch(sealed, recipient, context, tmp_path / "out")

        result = asyncio.run(handler())

    assert result.sha256 == hashlib.sha256(data).digest()


def test_fetch__onion_address_without_tor_transport__raises_transporterror(tmp_path, recipient, context):
    session = new_sender_session(recipient.public_bytes, context)
    sealed = session.seal_locator("http://" + "a" * 56 + ".onion", bytes(32), bytes(32), 1)

    with pytest.raises(TransportError, match="configured transport"):
        fetch(sealed, recipient, context, tmp_path / "out")


@pytest.mark.parametrize("bad", [0, -1, 65, 2.5, True])
def test_fetch__bad_concurrency__raises_transfererror(tmp_path, recipient, context, bad):
    with pytest.raises(TransferError, match="concurrency"):
        fetch(b"x", recipient, context, tmp_path / "out", concurrency=bad)


def test_default_concurrency__this_machine__between_2_and_8():
    assert 2 <= default_concurrency() <= 8


def test_directtransport__wildcard_bind__publishes_a_reachable_address_not_the_wildcard():
    transport = DirectTransport(host="0.0.0.0")

    address = transport.publish("0.0.0.0", 4321)

    assert address.startswith("http://") and address.endswith(":4321") and "0.0.0.0" not in address
    assert transport.handles(address) and not transport.handles("http://x.onion") and not transport.handles("ftp://h")
    assert DirectTransport(public_host="192.0.2.9").publish("0.0.0.0", 1) == "http://192.0.2.9:1"


def test_directtransport__bad_port__raises_transporterror():
    with pytest.raises(TransportError, match="out of range"):
        DirectTransport(port=70000)
