"""The chunk host: serves encrypted chunks over HTTP, one URL per chunk, through a transport.

``GET /t/<transfer id>/manifest`` and ``GET /t/<transfer id>/c/<index>`` (zero-copy ``sendfile``;
``Range`` works too), ``GET /health`` for reachability checks. The server runs on its own event loop
in a background thread, so the host is usable from plain synchronous code (the daemon, the CLI).
Encrypted transfers live in ``folder/<transfer id>/`` and survive a restart: ``start()`` serves every
complete transfer folder it finds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ichain.transfer.crypto import TransferContext
from ichain.transfer.errors import HostError, TransferError, TransferNotFound
from ichain.transfer.send import DEFAULT_CHUNK_SIZE, MANIFEST_NAME, check_chunk_size, chunk_name, encrypt_file
from ichain.transfer.transport import DirectTransport, Transport

_TID_RE = re.compile(r"^[0-9a-f]{32}$")
_START_TIMEOUT = 30.0
_MAX_SERVED_CHUNKS = 10_000_000


class SealedLocator(bytes):
    """The sealed locator (plain ``bytes`` for the contract), also carrying its ``transfer_id`` (hex) for the host."""

    transfer_id: str

    def __new__(cls, data: bytes, transfer_id: str) -> SealedLocator:
        obj = super().__new__(cls, data)
        obj.transfer_id = transfer_id
        return obj


@dataclass
class _Hosted:
    folder: Path
    chunks: int
    size: int
    served: list[int] = field(default_factory=list)
    manifest_requests: int = 0
    bytes_served: int = 0


class ChunkHost:
    """Hosts encrypted transfers for their recipients.

    Args:
        folder: Where encrypted transfers are kept (created, mode 0700).
        transport: How the host is reached; :class:`DirectTransport` on 127.0.0.1 by default.
        chunk_size: Plaintext bytes per chunk for new offers.
    """

    def __init__(
        self, folder: str | os.PathLike, transport: Transport | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ):
        self.folder = Path(folder)
        self.transport = transport or DirectTransport()
        self.chunk_size = check_chunk_size(chunk_size)
        self.address: str | None = None
        self.bound: tuple[str, int] | None = None
        self._transfers: dict[str, _Hosted] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._published = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving and publish through the transport.

        Returns:
            The address peers fetch from (also ``self.address``).

        Raises:
            HostError: The folder is unusable or the server cannot bind.
            TransferError: The transport cannot publish (its own one-line error).
        """
        if self._thread is not None:
            raise HostError("this chunk host is already started")
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise HostError(f"cannot create the host folder {self.folder}: {exc.strerror}") from None
        self.serve_existing()
        ready = threading.Event()
        outcome: dict[str, Any] = {}
        host, port = self.transport.listen_address()
        self._thread = threading.Thread(
            target=self._serve, args=(host, port, ready, outcome), name="chunk-host", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or "error" in outcome:
            self._shutdown_server()
            raise HostError(f"cannot serve on {host}:{port}: {outcome.get('error', 'timed out')}")
        self.bound = outcome["bound"]
        try:
            self.address = self.transport.publish(*self.bound)
        except BaseException:
            self._shutdown_server()
            raise
        self._published = True
        return self.address

    def stop(self) -> None:
        """Unpublish and stop serving (idempotent). Encrypted transfers stay in the folder."""
        try:
            if self._published:
                self._published = False
                self.transport.unpublish()
        finally:
            self._shutdown_server()
            self.address = None

    def __enter__(self) -> ChunkHost:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, host: str, port: int, ready: threading.Event, outcome: dict) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/t/{tid}/manifest", self._manifest)
        app.router.add_get("/t/{tid}/c/{index:[0-9]{1,10}}", self._chunk)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port, reuse_address=True, backlog=256)
            loop.run_until_complete(site.start())
            sockname = runner.addresses[0]  # the real port when port was 0
            outcome["bound"] = (host, sockname[1])
        except OSError as exc:
            outcome["error"] = exc.strerror or str(exc)
            loop.run_until_complete(runner.cleanup())
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _shutdown_server(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop, self._thread = None, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)

    def serve_existing(self) -> list[str]:
        """Serve every complete transfer folder found in the host folder (``start`` does this).

        Call it again after placing a prepared transfer folder there by other means.

        Returns:
            The transfer ids now served.
        """
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".part") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)  # an offer interrupted mid-encryption
                continue
            if _TID_RE.match(entry.name) and (entry / MANIFEST_NAME).is_file():
                try:
                    doc = json.loads((entry / MANIFEST_NAME).read_bytes())
                    chunks = int(doc["chunks"])
                    if not 1 <= chunks <= _MAX_SERVED_CHUNKS:
                        continue
                    self._register(entry.name, entry, chunks, int(doc["size"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # not ours or damaged: not served
        return self.transfers()

    def _register(self, tid: str, folder: Path, chunks: int, size: int) -> None:
        with self._lock:
            if tid not in self._transfers:  # keep the counters of one already served
                self._transfers[tid] = _Hosted(folder=folder, chunks=chunks, size=size, served=[0] * chunks)

    # -- offers --------------------------------------------------------------------------------
    def offer(
        self,
        path: str | os.PathLike,
        recipient_public_key: bytes,
        context: TransferContext,
        *,
        chunk_size: int | None = None,
    ) -> SealedLocator:
        """Encrypt ``path`` to the recipient, host it, and return the locator sealed to the recipient.

        Args:
            path: The file to send.
            recipient_public_key: The recipient's 32-byte X25519 key (as registered on chain).
            context: What the transfer is for and between whom (bound into the keys); its ``sender_key``
                is the key the sender puts in the envelope around the locator.
            chunk_size: Plaintext bytes per chunk (default: the host's).

        Returns:
            The sealed locator: ``bytes`` safe to put in a contract event; ``.transfer_id`` names it here.

        Raises:
            HostError: Not started, or the file cannot be read.
            PublicKeyInvalid, ContextInvalid: Bad recipient key or context.
        """
        if self.address is None:
            raise HostError("start the chunk host before offering files")
        prepared = encrypt_file(
            path, recipient_public_key, context, self.folder, chunk_size=chunk_size or self.chunk_size
        )
        tid = prepared.session.transfer_id.hex()
        self._register(tid, self.folder / tid, prepared.manifest.chunks, prepared.manifest.size)
        return SealedLocator(prepared.seal(self.address), tid)

    def transfers(self) -> list[str]:
        """Transfer ids currently served."""
        with self._lock:
            return sorted(self._transfers)

    def remove(self, transfer_id: str) -> None:
        """Stop serving a transfer and delete its encrypted chunks."""
        tid = _tid(transfer_id)
        with self._lock:
            hosted = self._transfers.pop(tid, None)
        if hosted is None:
            raise TransferNotFound(f"this host does not serve transfer {tid}")
        shutil.rmtree(hosted.folder, ignore_errors=True)

    def progress(self, transfer_id: str) -> dict[str, Any]:
        """Serving progress of a transfer (JSON-able): requests per chunk, bytes sent.

        Raises:
            TransferNotFound: The host does not serve it.
        """
        tid = _tid(transfer_id)
        with self._lock:
            hosted = self._transfers.get(tid)
            if hosted is None:
                raise TransferNotFound(f"this host does not serve transfer {tid}")
            served = list(hosted.served)
            return {
                "transfer": tid,
                "size": hosted.size,
                "chunks": hosted.chunks,
                "served": served,
                "chunks_served": sum(1 for n in served if n),
                "requests": sum(served),
                "manifest_requests": hosted.manifest_requests,
                "bytes_served": hosted.bytes_served,
                "complete": all(served),
            }

    # -- HTTP ----------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _lookup(self, request: web.Request) -> _Hosted:
        with self._lock:
            hosted = self._transfers.get(request.match_info["tid"])
        if hosted is None:
            raise web.HTTPNotFound()
        return hosted

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        hosted = self._lookup(request)
        with self._lock:
            hosted.manifest_requests += 1
        return _file(hosted.folder / MANIFEST_NAME)

    async def _chunk(self, request: web.Request) -> web.StreamResponse:
        hosted = self._lookup(request)
        index = int(request.match_info["index"])
        if index >= hosted.chunks:
            raise web.HTTPNotFound()
        path = hosted.folder / chunk_name(index)
        with self._lock:
            hosted.served[index] += 1
        response = _file(path)
        with self._lock:
            try:
                hosted.bytes_served += path.stat().st_size
            except OSError:
                pass
        return response


def _file(path: Path) -> web.StreamResponse:
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store"})


def _tid(transfer_id: str | bytes) -> str:
    if isinstance(transfer_id, SealedLocator):
        return transfer_id.transfer_id
    if isinstance(transfer_id, (bytes, bytearray)) and len(transfer_id) == 16:
        return bytes(transfer_id).hex()
    if isinstance(transfer_id, str) and _TID_RE.match(transfer_id):
        return transfer_id
    raise TransferError(f"a transfer id is 32 hex digits, got {transfer_id!r}")
