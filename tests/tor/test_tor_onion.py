"""Onion publication, reachability, stream isolation, client auth and process ownership on a real private Tor network."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import aiohttp
import pytest

from ichain.errors import IChainError
from ichain.tor import (
    ClientAuthKey,
    OnionUnreachable,
    PublicationTimeout,
    TorConfigError,
    TorProcess,
    TorStartError,
    prove_reachable,
    publish_onion,
    transport_from_options,
)
from ichain.tor.process import pid_running

pytestmark = pytest.mark.tor


async def _fetch_parallel(transport, url: str, streams: int) -> list[bytes]:
    async def one(i: int) -> bytes:
        async with aiohttp.ClientSession(connector=transport.connector(f"s{i}-{os.urandom(4).hex()}"),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.get(f"{url}/blob") as response:
                response.raise_for_status()
                return await response.read()

    return await asyncio.gather(*(one(i) for i in range(streams)))


def test_publish_onion__first_attempt_times_out__retried_once_and_reachable(tor_client, blob_server):
    host = tor_client("host")
    server = blob_server(b"hello")
    service = publish_onion(host, server.port, attempt_timeouts=[0.05, 30], backoff=0.2)
    assert service.attempts == 2
    assert len(service.attempt_log) == 1 and "attempt 1" in service.attempt_log[0]
    assert server.requests >= 1  # the proof fetch really reached the server through tor
    assert len(service.service_id) == 56


def test_publish_onion__every_attempt_times_out__one_line_error_within_deadline(tor_client, blob_server):
    host = tor_client("host")
    server = blob_server(b"x")
    t0 = time.monotonic()
    with pytest.raises(PublicationTimeout) as err:
        publish_onion(host, server.port, attempt_timeouts=[0.02, 0.02, 0.02], backoff=0.1)
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert "\n" not in message and "3 attempts" in message
    assert isinstance(err.value, IChainError)
    assert host.controller.get_info("onions/current", "") == ""  # timed-out services were withdrawn


def test_publish_onion__key_file__same_address_after_republish(tor_client, blob_server, tmp_path):
    host = tor_client("host")
    server = blob_server(b"x")
    key = tmp_path / "onion.key"
    first = publish_onion(host, server.port, key_file=key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    host.controller.remove_ephemeral_hidden_service(first.service_id)
    second = publish_onion(host, server.port, key_file=key)
    assert second.service_id == first.service_id


def test_connector__four_isolation_keys__four_circuits_and_identical_bytes(tor_transport, blob_server):
    blob = os.urandom(2 << 20)
    server = blob_server(blob)
    host, client = tor_transport("host"), tor_transport("client")
    url = host.publish("127.0.0.1", server.port)
    bodies = asyncio.run(_fetch_parallel(client, url, 4))
    assert all(hashlib.sha256(b).digest() == hashlib.sha256(blob).digest() for b in bodies)
    assert client.circuits_used(url) == 4


def test_connector__same_isolation_key__one_circuit(tor_transport, blob_server):
    server = blob_server(b"y" * 1000)
    host, client = tor_transport("host"), tor_transport("client")
    url = host.publish("127.0.0.1", server.port)

    async def same_key() -> None:
        for _ in range(3):
            async with aiohttp.ClientSession(connector=client.connector("fixed")) as session:
                async with session.get(url) as response:
                    await response.read()

    asyncio.run(same_key())
    assert client.circuits_used(url) == 1


def test_client_auth__only_the_key_holder__connects(tor_client, blob_server):
    server = blob_server(b"secret")
    host, stranger, recipient = tor_client("host"), tor_client("stranger"), tor_client("recipient")
    key = ClientAuthKey.generate()
    service = publish_onion(host, server.port, authorized_client=key.public_b32)
    with pytest.raises(OnionUnreachable):
        prove_reachable(stranger, service.hostname, timeout=15)
    from ichain.tor import add_client_auth

    add_client_auth(recipient, service.hostname, key)
    assert prove_reachable(recipient, service.hostname, timeout=30) > 0


def test_transport_from_options__unknown_transport__config_error():
    with pytest.raises(TorConfigError, match="unknown transport 'carrier-pigeon'"):
        transport_from_options("carrier-pigeon")


def test_transport_from_options__tor_on_private_network__publishes_and_owns_tor(tor_network, tor_pids, blob_server,
                                                                             tmp_path):
    info = tor_network.save(tmp_path / "net.json")
    transport = transport_from_options("tor", tor_network=info, tor_data_dir=tmp_path / "tor")
    pid = transport.tor.pid
    tor_pids.add(pid)
    try:
        assert transport.publish("127.0.0.1", blob_server(b"z").port).endswith(".onion")
    finally:
        transport.close()
    assert not pid_running(pid)


def test_transport_from_options__direct__direct_transport():
    transport = transport_from_options("direct", port=0)
    assert transport.name == "direct"


def test_launch__bad_torrc_option__one_line_start_error(tmp_path):
    with pytest.raises(TorStartError) as err:
        TorProcess.launch(tmp_path / "bad", {"NoSuchOption": 1}, name="bad tor")
    assert "\n" not in str(err.value) and "bad tor" in str(err.value)


def test_attach__nothing_listening__one_line_control_error(tmp_path):
    from ichain.tor import TorControlError

    with pytest.raises(TorControlError):
        TorProcess.attach(str(tmp_path / "no.sock"), timeout=0.5)


def test_owned_tor__owner_process_killed__tor_exits(tor_network, tor_pids, tmp_path):
    """A daemon that dies (SIGKILL, no cleanup) takes its tor with it: no orphans."""
    info = tor_network.save(tmp_path / "net.json")
    script = textwrap.dedent(f"""
        import sys, time
        from ichain.tor import launch_tor
        tor = launch_tor(data_dir={str(tmp_path / 'owned')!r}, tor_network={str(info)!r})
        print(tor.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        tor_pids.add(pid)
        assert pid_running(pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_running(pid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_transport_from_options__attach_to_running_tor__publishes_and_leaves_it_running(tor_client, blob_server):
    running = tor_client("system-like")  # stands in for a system tor: control socket + cookie auth
    transport = transport_from_options("tor", tor_control=str(running.data_dir / "control.sock"))
    url = transport.publish("127.0.0.1", blob_server(b"a").port)
    assert url.endswith(".onion") and transport.handles(url) and not transport.handles("http://127.0.0.1:1")
    transport.close()
    assert running.alive()
    assert running.controller.get_info("onions/current", "") == ""  # close() withdrew the service


def test_transport_from_options__control_and_network_both__config_error(tmp_path):
    with pytest.raises(TorConfigError, match="not both"):
        transport_from_options("tor", tor_control=9051, tor_network=tmp_path / "net.json")
