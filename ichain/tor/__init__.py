"""Tor transport: tor processes driven with stem, onion hosting, SOCKS fetching; a private test network.

Public API::

    transport = transport_from_options("tor", tor_network="net.json")   # or tor_control=9051, or neither
    host = ChunkHost(folder, transport=transport)                       # published as an onion service
    fetch(sealed, keypair, context, dest, transport=transport)          # isolated circuits per stream
    transport.close()

    with PrivateTorNetwork() as net:                                     # tests, bench, demo
        tor = net.add_client("alice"); TorTransport(tor)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ichain.tor.errors import (
    OnionUnreachable,
    PublicationTimeout,
    TorConfigError,
    TorControlError,
    TorError,
    TorNotFound,
    TorStartError,
)
from ichain.tor.onion import ClientAuthKey, OnionService, add_client_auth, prove_reachable, publish_onion
from ichain.tor.process import TorProcess
from ichain.tor.testnet import PrivateTorNetwork
from ichain.tor.transport import TorTransport

if TYPE_CHECKING:
    from ichain.config import IChainConfig
    from ichain.transfer.transport import Transport

__all__ = [
    "ClientAuthKey",
    "OnionService",
    "OnionUnreachable",
    "PrivateTorNetwork",
    "PublicationTimeout",
    "TorConfigError",
    "TorControlError",
    "TorError",
    "TorNotFound",
    "TorProcess",
    "TorStartError",
    "TorTransport",
    "add_client_auth",
    "launch_tor",
    "prove_reachable",
    "publish_onion",
    "transport_for",
    "transport_from_options",
]


def launch_tor(*, data_dir: Path | str | None = None, tor_network: "Path | str | PrivateTorNetwork | None" = None,
               tor_cmd: str = "tor", bootstrap_timeout: float = 120.0) -> TorProcess:
    """Launch a private tor we own, on the real Tor network or on a private test network.

    Args:
        data_dir: tor's data directory (a temp dir when None; a fixed one keeps guards between runs).
        tor_network: a :class:`PrivateTorNetwork` or the JSON file its ``save()`` wrote.
        tor_cmd: the tor executable.
        bootstrap_timeout: seconds to reach 100% bootstrap.

    Raises:
        TorNotFound, TorStartError, TorConfigError: one line each.
    """
    if isinstance(tor_network, PrivateTorNetwork):
        config = tor_network.client_config()
    elif tor_network:
        config = PrivateTorNetwork.client_config_from_file(tor_network)
    else:
        config = {}
    data = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ichain-tor-"))
    tor = TorProcess.launch(data, config, name="tor", tor_cmd=tor_cmd)
    try:
        tor.wait_bootstrapped(bootstrap_timeout)
    except BaseException:
        tor.stop()
        raise
    return tor


def transport_from_options(transport: str = "direct", *, host: str = "127.0.0.1", port: int = 0,
                           public_host: str | None = None, tor_control: str | int | None = None,
                           tor_password: str | None = None,
                           tor_network: "Path | str | PrivateTorNetwork | None" = None,
                           tor_data_dir: Path | str | None = None, tor_cmd: str = "tor",
                           onion_key_file: Path | str | None = None, publish_timeout: float = 30.0,
                           publish_attempts: int = 4, attempt_timeouts: Sequence[float] | None = None,
                           authorized_client: str | None = None, client_auth: str | None = None,
                           stall_timeout: float | None = None, connect_timeout: float | None = None):
    """Build the transport a peer uses, from ape-config.yaml / CLI options.

    Args:
        transport: ``"direct"`` (plain TCP, :class:`~ichain.transfer.DirectTransport`) or ``"tor"``.
        host: direct only: interface to bind (``0.0.0.0`` for a LAN).
        port: direct only: port to bind (0 = any free port).
        public_host: direct only: host name/IP other peers use.
        tor_control: tor only: attach to a running (system) tor via this control port number or control
            socket path, with cookie authentication (or ``tor_password``). Not stopped on close.
        tor_password: tor only: control password of that system tor.
        tor_network: tor only: launch our own tor on a private test network (a PrivateTorNetwork or the
            JSON file its ``save()`` wrote). Without ``tor_control`` or ``tor_network``, our own tor is
            launched on the real Tor network.
        tor_data_dir: tor only: data directory of the tor we launch (temp dir when None).
        tor_cmd: tor only: the tor executable.
        onion_key_file: tor only: keep the onion service key there, so a restarted host keeps its address.
        publish_timeout: tor only: seconds per publication attempt.
        publish_attempts: tor only: publication attempts (with exponential backoff from 1 s).
        attempt_timeouts: tor only: explicit per-attempt timeouts (tests).
        authorized_client: tor only: base32 x25519 public key allowed to connect (client authorization).
        client_auth: tor only: base64 x25519 private key this peer uses for services requiring client auth.
        stall_timeout: seconds without a byte before a stream is retried (default 10 direct, 30 tor).
        connect_timeout: seconds to connect (default 10 direct, 60 tor).

    Returns:
        A :class:`~ichain.transfer.transport.Transport`; call ``close()`` on a TorTransport when done
        (it stops the tor it launched).

    Raises:
        TorConfigError: unknown transport or options that don't fit it.
        TorNotFound, TorStartError, TorControlError: tor could not be started or reached.
    """
    name = str(transport).strip().lower()
    timeouts = {k: v for k, v in (("stall_timeout", stall_timeout), ("connect_timeout", connect_timeout))
                if v is not None}
    if name == "direct":
        from ichain.transfer.transport import DirectTransport

        if tor_control is not None or tor_network is not None:
            raise TorConfigError("tor options given with transport 'direct' — use --transport tor")
        return DirectTransport(host, port, public_host=public_host, **timeouts)
    if name != "tor":
        raise TorConfigError(f"unknown transport {transport!r} — use 'direct' or 'tor'")
    if tor_control is not None and tor_network is not None:
        raise TorConfigError("give either tor_control (a system tor) or tor_network (a private one), not both")
    if tor_control is not None:
        tor, own = TorProcess.attach(tor_control, password=tor_password), False
    else:
        tor, own = launch_tor(data_dir=tor_data_dir, tor_network=tor_network, tor_cmd=tor_cmd), True
    return TorTransport(tor, own_tor=own, publish_timeout=publish_timeout, publish_attempts=publish_attempts,
                        attempt_timeouts=attempt_timeouts, key_file=onion_key_file,
                        authorized_client=authorized_client, client_auth=client_auth, **timeouts)


def transport_for(config: "IChainConfig", port: int, key_dir: Path | None = None) -> "Transport":
    """The transport a peer's settings ask for: direct HTTP on ``config.host:port``, or Tor onion services.

    Args:
        config: The peer's settings (``transport``, ``host`` and the ``tor`` options).
        port: Port of the chunk host (direct transport; a kept port keeps on-chain locators valid).
        key_dir: Tor only: the onion service key is kept in ``key_dir/onion.key``, so a restarted host
            keeps its onion address (locators already on chain name it).

    Raises:
        TorConfigError, TorNotFound, TorStartError, TorControlError: as :func:`transport_from_options`.
    """
    if config.transport == "tor":
        options = dict(config.tor or {})
        if key_dir is not None:
            options.setdefault("onion_key_file", str(Path(key_dir) / "onion.key"))
        return transport_from_options("tor", **options)
    return transport_from_options("direct", host=config.host, port=int(port))
