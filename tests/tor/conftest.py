"""Fixtures for the Tor tests: ONE private Tor network per test session, bootstrapped once.

Every tor any test launches is registered in ``tor_pids``; the session ends by asserting (by PID)
that none of them is still running.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Callable, Iterator

import pytest
from aiohttp import web

from ichain.tor import PrivateTorNetwork, TorProcess, TorTransport
from ichain.tor.process import pid_running

pytestmark = pytest.mark.tor


@pytest.fixture(scope="session")
def tor_pids() -> Iterator[set[int]]:
    """PIDs of every tor launched in this session; asserted gone at the very end."""
    pids: set[int] = set()
    yield pids
    left = sorted(p for p in pids if pid_running(p))
    assert not left, f"tor processes left behind: {left}"


@pytest.fixture(scope="session")
def tor_network(tor_pids, tmp_path_factory) -> Iterator[PrivateTorNetwork]:
    """The session's private Tor network (1 authority + 5 relays on 127.0.0.1)."""
    net = PrivateTorNetwork(tmp_path_factory.mktemp("tornet"), relays=5)
    net.start(timeout=120)
    tor_pids.update(net.pids())
    yield net
    tor_pids.update(net.pids())
    net.stop()


@pytest.fixture
def tor_client(tor_network, tor_pids) -> Iterator[Callable[[str], TorProcess]]:
    """Factory: a bootstrapped client tor on the private network, stopped after the test."""
    made: list[TorProcess] = []

    def make(name: str = "client") -> TorProcess:
        tor = tor_network.launch_client(name)
        tor_pids.add(tor.pid)
        made.append(tor)
        return tor

    yield make
    for tor in made:
        tor.stop()


@pytest.fixture
def tor_transport(tor_client) -> Callable[..., TorTransport]:
    """Factory: a TorTransport on a fresh client tor (closed with it)."""
    made: list[TorTransport] = []

    def make(name: str = "peer", **kwargs) -> TorTransport:
        transport = TorTransport(tor_client(name), **kwargs)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


class BlobServer:
    """A real aiohttp HTTP server on 127.0.0.1:0 (own thread) serving ``blob`` at any path."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        return web.Response(body=self.blob)

    def start(self) -> "BlobServer":
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        async def _cleanup():
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def blob_server() -> Iterator[Callable[[bytes], BlobServer]]:
    """Factory: an HTTP server serving the given bytes."""
    made: list[BlobServer] = []

    def make(blob: bytes | None = None) -> BlobServer:
        server = BlobServer(blob if blob is not None else os.urandom(1 << 20)).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
