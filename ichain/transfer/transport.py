"""The transport interface: how a chunk host is reached and how a fetcher opens its connections.

A transfer always speaks plain HTTP/1.1 between a :class:`~ichain.transfer.host.ChunkHost` (an aiohttp
server on a local socket) and :func:`~ichain.transfer.fetch.fetch` (aiohttp clients, several in
parallel). Confidentiality and integrity come from the transfer's own encryption, not from the
transport; a transport only decides *where the bytes flow*:

* **Hosting.** The chunk host asks its transport where to listen (:meth:`Transport.listen_address`),
  binds an HTTP server there (port 0 = any free port), then calls :meth:`Transport.publish` with the
  bound ``(host, port)``. ``publish`` makes that socket reachable to others and returns the
  **address**: the base URL other peers use (``"http://192.0.2.7:41234"``, ``"http://<56 chars>.onion"``).
  The address goes into the sealed locator, so nobody but the recipient ever sees it.
  :meth:`Transport.unpublish` withdraws it when the host stops.
* **Fetching.** The fetcher opens one ``aiohttp.ClientSession`` per parallel stream, each on a connector
  from :meth:`Transport.connector`, called with a distinct ``isolation_key`` per stream. After a stall
  or a failure the fetcher opens a fresh session with a *new* key, so a transport that can isolate
  streams (Tor: the key becomes the SOCKS username/password, hence a separate circuit) retries on a
  different path. Requests are ``GET {address}/t/{transfer_id}/manifest`` and
  ``GET {address}/t/{transfer_id}/c/{index}``; a transport never needs to know these paths.

Writing a transport (the Tor one lives in ``ichain.tor``)::

    class TorTransport(Transport):
        name = "tor"
        stall_timeout = 60.0                     # Tor is slower to first byte than a LAN
        connect_timeout = 60.0

        def publish(self, host, port):           # blocking is fine (called once from ChunkHost.start)
            onion = controller.create_ephemeral_hidden_service({80: f"{host}:{port}"}, ...)
            return f"http://{onion.service_id}.onion"

        def unpublish(self):
            controller.remove_ephemeral_hidden_service(...)

        def handles(self, address):
            return yarl.URL(address).host.endswith(".onion")

        def connector(self, isolation_key):     # called inside the fetcher's event loop
            return aiohttp_socks.ProxyConnector.from_url(
                f"socks5://{isolation_key}:x@127.0.0.1:{socks_port}", rdns=True)

Rules for implementations: ``publish``/``unpublish`` may block (they run in the caller's thread, not in
an event loop) and raise a :class:`~ichain.transfer.errors.TransferError` subclass with a one-line
message on failure; ``connector`` must not block and is called from within a running event loop; a
transport object may be shared by several hosts and fetches, but ``publish``/``unpublish`` pair up per
host (each ChunkHost calls ``publish`` once on start and ``unpublish`` once on stop).
"""

from __future__ import annotations

import abc
import ipaddress
import socket

import aiohttp
import yarl

from ichain.transfer.errors import TransportError


class Transport(abc.ABC):
    """Where a chunk host is published and how a fetcher connects to one (see the module docstring)."""

    #: Short name shown in logs and the CLI ("direct", "tor").
    name: str = "transport"
    #: Seconds without a single byte on a stream before the fetcher declares it stalled and retries.
    stall_timeout: float = 10.0
    #: Seconds allowed to open a connection (for Tor: to build the circuit to the onion service).
    connect_timeout: float = 10.0

    def listen_address(self) -> tuple[str, int]:
        """Where the chunk host should bind its HTTP server.

        Returns:
            ``(host, port)``; port 0 means "any free port". The default is loopback only, which is
            right for any transport that forwards to the server itself (Tor does).
        """
        return ("127.0.0.1", 0)

    @abc.abstractmethod
    def publish(self, host: str, port: int) -> str:
        """Make the chunk host's bound socket reachable to other peers.

        Args:
            host: The host the server is bound to.
            port: The port the server is bound to (the real one, never 0).

        Returns:
            The address: a base URL without a trailing slash (``http://HOST[:PORT]``).
        """

    def unpublish(self) -> None:
        """Withdraw what :meth:`publish` made reachable. The default does nothing."""

    def handles(self, address: str) -> bool:
        """Whether this transport can reach ``address`` (used to pick a default and to fail early).

        Args:
            address: A base URL from a locator.
        """
        return True

    @abc.abstractmethod
    def connector(self, isolation_key: str) -> aiohttp.BaseConnector:
        """A fresh connector for one parallel stream of a fetch.

        Called inside the fetcher's running event loop; the fetcher closes it. Streams given
        different keys should not share a network path when the transport can arrange that.

        Args:
            isolation_key: Distinct per stream and per retry of a stream (only ``[A-Za-z0-9-]``).
        """


class DirectTransport(Transport):
    """Plain TCP: ``host:port`` on one machine or a LAN (the default transport).

    Args:
        host: Interface the chunk host binds ("127.0.0.1" for this machine only, "0.0.0.0" for a LAN).
        port: Port to bind; 0 (the default) picks a free one.
        public_host: The host name or IP other peers use to reach this one. Defaults to ``host``, or
            for a wildcard bind to this machine's outward-facing IP address.
        stall_timeout: Seconds without a byte before a stream is declared stalled.
        connect_timeout: Seconds to open a TCP connection.
    """

    name = "direct"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_host: str | None = None,
        stall_timeout: float = 10.0,
        connect_timeout: float = 10.0,
    ):
        if not 0 <= int(port) <= 65535:
            raise TransportError(f"port {port} is out of range (0-65535)")
        self.host = host
        self.port = int(port)
        self.public_host = public_host
        self.stall_timeout = float(stall_timeout)
        self.connect_timeout = float(connect_timeout)

    def listen_address(self) -> tuple[str, int]:
        """Bind where the constructor said."""
        return (self.host, self.port)

    def publish(self, host: str, port: int) -> str:
        """Return ``http://PUBLIC_HOST:PORT``; nothing else is needed to be reachable directly."""
        public = self.public_host or host
        if public in ("0.0.0.0", "::", ""):
            public = _outward_ip()
        if ":" in public and not public.startswith("["):  # bare IPv6 literal
            public = f"[{public}]"
        return f"http://{public}:{port}"

    def handles(self, address: str) -> bool:
        """Any http address except onion services."""
        try:
            url = yarl.URL(address)
        except (TypeError, ValueError):
            return False
        host = url.host
        if not host:
            return False
        return url.scheme == "http" and not host.endswith(".onion")

    def connector(self, isolation_key: str) -> aiohttp.BaseConnector:
        """A plain TCP connector (one connection per stream is all a stream needs)."""
        return aiohttp.TCPConnector(limit=2, force_close=False, enable_cleanup_closed=True)

    def __repr__(self) -> str:
        return f"DirectTransport(host={self.host!r}, port={self.port})"


def _outward_ip() -> str:
    """This machine's IP address on the interface that routes outward (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any routable address picks the interface
            ip = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return str(ipaddress.ip_address(ip))


def default_transport(address: str) -> Transport:
    """The transport to use for ``address`` when the caller gave none.

    Args:
        address: A base URL from a locator.

    Raises:
        TransportError: The address needs a transport that must be configured (e.g. an onion address).
    """
    direct = DirectTransport()
    if direct.handles(address):
        return direct
    raise TransportError(f"address {address} needs a configured transport (e.g. Tor for .onion); pass transport=")
