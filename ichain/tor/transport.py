"""The Tor transport: chunk hosts behind onion services, fetches on isolated SOCKS circuits.

One long-lived onion service per chunk host (i.e. per daemon), not one per transfer:

* publication is the slow, failure-prone step (seconds on a private network, tens of seconds and
  occasional stuck uploads on the real one; the paper's main pain). A per-daemon service pays it
  once at start; a per-transfer service would pay it, and risk it, on every task and result.
* it protects nothing more: transfers are already separated by random transfer ids that only appear
  inside locators sealed to their recipient, and every byte is end-to-end encrypted to that recipient.
* with a persisted key (``key_file``) a restarted host comes back at the *same* address, so locators
  already sent on chain stay valid and the recipient's fetch simply resumes.

When only one recipient should even be able to connect (``authorized_client``), the service is
published with v3 client authorization for that recipient's key: that is inherently per recipient, so
use one TorTransport (hence one service) per recipient host in that mode.

Fetching: each parallel stream gets its own SOCKS username (tor's ``IsolateSOCKSAuth``, on by default),
hence its own circuit; a stalled stream is retried by the fetcher with a new isolation key, i.e. on a
fresh circuit that avoids whatever relay stalled.
"""

from __future__ import annotations

import asyncio
import errno
import time
import re
import threading
from pathlib import Path
from typing import Callable, Sequence

import aiohttp
import stem
import yarl
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError, ProxyType
from stem.control import EventType
from stem.response.events import StreamEvent

from ichain.tor.onion import ClientAuthKey, OnionService, add_client_auth, publish_onion
from ichain.tor.process import TorProcess
from ichain.transfer.transport import Transport


#: Tor's extended SOCKS5 replies (``SocksPort ... ExtendedErrors``) for onion services.
_TOR_SOCKS_ERRORS = {
    0xF0: "onion service descriptor not found (not published, or gone)",
    0xF1: "onion service descriptor is invalid",
    0xF2: "introduction to the onion service failed (host down?)",
    0xF3: "rendezvous with the onion service failed",
    0xF4: "the onion service requires client authorization (no key given)",
    0xF5: "client authorization for the onion service was refused (wrong key)",
    0xF6: "invalid onion address",
    0xF7: "introduction to the onion service timed out",
}


#: Replies after which tor's cached view of the service (descriptor, failed intro points) may be stale.
_STALE_SERVICE_CODES = {0xF0, 0xF2, 0xF3, 0xF7}


class _TorConnector(ProxyConnector):
    """A SOCKS connector whose failures are aiohttp connection errors with tor's reason in one line.

    aiohttp-socks raises its own exception types; the fetcher (rightly) only classifies aiohttp's and
    OSError, so a dead circuit or onion service becomes a retryable ``ClientOSError`` here. After an
    onion-level failure it asks the transport to refresh tor's client state first, so the fetcher's
    retry fetches a fresh descriptor instead of re-trying the intro points tor remembers as failed.
    """

    def __init__(self, *args, on_stale=None, retry_window: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_stale = on_stale
        self._retry_window = retry_window

    async def _wrap_create_connection(self, *args, **kwargs):
        # Reaching an onion service includes a descriptor fetch, an introduction and a rendezvous; when the
        # service just moved (a relay under it died, the host restarted) those fail for a few seconds
        # until its new descriptor is out. That is still "connecting": retry it within the window.
        deadline = time.monotonic() + self._retry_window
        delay = 0.5
        while True:
            try:
                return await super()._wrap_create_connection(*args, **kwargs)
            except ProxyTimeoutError as exc:
                raise aiohttp.ClientOSError(errno.ETIMEDOUT, f"tor: connect timed out ({exc})") from None
            except ProxyConnectionError as exc:
                raise aiohttp.ClientOSError(errno.ECONNREFUSED, f"tor's SOCKS port is down ({exc})") from None
            except ProxyError as exc:
                code: int | None = exc.error_code
                if code is None:  # python-socks reports tor's extended codes only in the text: "0XF2"
                    match = re.search(r"0[xX]([0-9A-Fa-f]{2})", str(exc))
                    code = int(match.group(1), 16) if match else None
                known = _TOR_SOCKS_ERRORS.get(code) if code is not None else None
                reason = known or str(exc) or "SOCKS error"
                stale = code in _STALE_SERVICE_CODES
                if stale and self._on_stale is not None:
                    await asyncio.to_thread(self._on_stale)
                if not stale or time.monotonic() + delay > deadline:
                    raise aiohttp.ClientOSError(errno.EHOSTUNREACH, f"tor: {reason}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)


class TorTransport(Transport):
    """Publish chunk hosts as onion services and fetch through tor's SOCKS port.

    Args:
        tor: the tor to use (launched and owned, or attached to a system tor).
        own_tor: stop ``tor`` in :meth:`close` (True when the transport launched it).
        publish_timeout: seconds per publication attempt (descriptor upload + proof fetch).
        publish_attempts: publication attempts before :class:`~ichain.tor.errors.PublicationTimeout`.
        publish_backoff: seconds before the second attempt, doubled each time.
        attempt_timeouts: explicit per-attempt timeouts (tests force a first attempt to time out).
        key_file: keep the onion key there so a restarted host keeps its address.
        authorized_client: base32 x25519 public key; only its holder can connect (client auth).
        client_auth: :class:`ClientAuthKey` (or base64 private key) this side uses to fetch from
            services that require client authorization (given to tor on first contact per address).
        stall_timeout: seconds without a byte before the fetcher retries a stream on a new circuit.
        connect_timeout: seconds to build the circuits to an onion service and connect.
    """

    name = "tor"

    def __init__(self, tor: TorProcess, *, own_tor: bool = False, publish_timeout: float = 30.0,
                 publish_attempts: int = 4, publish_backoff: float = 1.0,
                 attempt_timeouts: Sequence[float] | None = None, key_file: Path | str | None = None,
                 authorized_client: str | None = None, client_auth: ClientAuthKey | str | None = None,
                 stall_timeout: float = 30.0, connect_timeout: float = 60.0):
        self.tor = tor
        self.own_tor = own_tor
        self.publish_timeout = float(publish_timeout)
        self.publish_attempts = int(publish_attempts)
        self.publish_backoff = float(publish_backoff)
        self.attempt_timeouts = list(attempt_timeouts) if attempt_timeouts else None
        self.key_file = key_file
        self.authorized_client = authorized_client
        self.client_auth = client_auth
        self.stall_timeout = float(stall_timeout)
        self.connect_timeout = float(connect_timeout)
        self.services: list[OnionService] = []
        self._socks_port: int | None = None
        self._authorized: set[str] = set()
        self._lock = threading.Lock()
        # Which circuits carried streams to which onion service (for tests, the bench and progress).
        self._circuits: dict[str, set[str]] = {}
        self._stream_listener: Callable[[StreamEvent], None] | None = None
        self._last_refresh = 0.0
        self.refreshes = 0

    # -- hosting ------------------------------------------------------------------------------

    def publish(self, host: str, port: int) -> str:
        """Publish an onion service forwarding port 80 to ``host:port``; return ``http://<id>.onion``.

        Raises:
            PublicationTimeout: not published and proven reachable after every attempt.
        """
        service = publish_onion(self.tor, port, host, timeout=self.publish_timeout,
                                attempts=self.publish_attempts, backoff=self.publish_backoff,
                                attempt_timeouts=self.attempt_timeouts, key_file=self.key_file,
                                authorized_client=self.authorized_client)
        with self._lock:
            self.services.append(service)
        return service.url

    def unpublish(self) -> None:
        """Remove the most recently published onion service (publish/unpublish pair up per host)."""
        with self._lock:
            service = self.services.pop() if self.services else None
        if service is not None and self.tor.alive():
            try:
                self.tor.controller.remove_ephemeral_hidden_service(service.service_id)
            except stem.ControllerError:
                pass  # tor already forgot it (restarted): nothing left to withdraw

    # -- fetching -----------------------------------------------------------------------------

    def handles(self, address: str) -> bool:
        """True for ``.onion`` addresses (and registers client authorization for them if configured)."""
        try:
            host = yarl.URL(address).host or ""
        except (TypeError, ValueError):
            return False
        if not host.endswith(".onion"):
            return False
        self.authorize(host)
        return True

    def authorize(self, onion_host: str) -> None:
        """Give tor this side's client-authorization key for ``onion_host`` (once; no-op without a key)."""
        if self.client_auth is None or onion_host in self._authorized:
            return
        add_client_auth(self.tor, onion_host, self.client_auth)
        self._authorized.add(onion_host)

    def connector(self, isolation_key: str) -> aiohttp.BaseConnector:
        """A SOCKS5 connector whose username is ``isolation_key``: one circuit per distinct key."""
        if self._socks_port is None:
            self._socks_port = self.tor.socks_port
            self._watch_streams()
        return _TorConnector(host="127.0.0.1", port=self._socks_port, proxy_type=ProxyType.SOCKS5,
                              username=f"ichain-{isolation_key}", password="x", rdns=True, limit=2,
                              on_stale=self.refresh_client_state, retry_window=self.connect_timeout)

    def refresh_client_state(self) -> None:
        """Make tor forget its client-side onion state (cached descriptors, failed intro points).

        Sends ``SIGNAL NEWNYM`` (new streams get clean circuits; a hosted service is unaffected), at most
        once every 5 s. Called after an onion-level SOCKS failure so the next attempt re-fetches the
        service's current descriptor, e.g. after a relay on its intro circuits died and it moved.
        """
        with self._lock:
            if time.monotonic() - self._last_refresh < 5.0:
                return
            self._last_refresh = time.monotonic()
        try:
            self.tor.controller.signal(stem.Signal.NEWNYM)
            self.refreshes += 1
        except stem.ControllerError:
            pass  # tor gone: the retry will fail with its own clear error

    def circuits_used(self, address: str | None = None) -> int:
        """Distinct tor circuits that carried successful streams (to ``address`` if given) so far."""
        with self._lock:
            if address is None:
                return len(set().union(*self._circuits.values())) if self._circuits else 0
            host = yarl.URL(address).host if "://" in address else address
            return len(self._circuits.get(host, set())) if host is not None else 0

    def reset_circuit_count(self) -> None:
        """Forget the circuits counted so far."""
        with self._lock:
            self._circuits.clear()

    def _watch_streams(self) -> None:
        def on_stream(event: StreamEvent) -> None:
            if event.status == stem.StreamStatus.SUCCEEDED and event.target_address and event.circ_id:
                with self._lock:
                    self._circuits.setdefault(event.target_address, set()).add(event.circ_id)

        self._stream_listener = on_stream
        self.tor.controller.add_event_listener(on_stream, EventType.STREAM)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Withdraw every service and stop tor if this transport owns it."""
        while self.services:
            self.unpublish()
        if self._stream_listener is not None and self.tor.alive():
            try:
                self.tor.controller.remove_event_listener(self._stream_listener)
            except stem.ControllerError:
                pass
        if self.own_tor:
            self.tor.stop()

    def __repr__(self) -> str:
        return f"TorTransport(tor={self.tor!r}, services={[s.hostname for s in self.services]})"
