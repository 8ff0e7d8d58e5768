"""The fetcher: opens a sealed locator, then fetches, verifies and assembles the chunks in parallel.

Each parallel stream has its own HTTP session from ``transport.connector(key)``; a failed or stalled
attempt renews that stream's session under a new key (a new Tor circuit) and retries with exponential
backoff. Verified chunks are recorded next to ``DEST.part``, so a fetch interrupted by any cause
(crash, Ctrl-C, a host going away, an exception raised from the progress callback) resumes where it
stopped, without fetching a verified chunk again.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from ichain.transfer.crypto import KeyPair, TransferContext, open_locator
from ichain.transfer.errors import (
    HostUnreachable,
    ManifestInvalid,
    Stalled,
    TamperedChunk,
    TransferError,
    TransferNotFound,
    TransferTooLarge,
    TransportError,
)
from ichain.transfer.manifest import MAX_MANIFEST_BYTES, Manifest
from ichain.transfer.progress import FAILED, FETCHING, RETRYING, REUSED, VERIFIED, FetchProgress, ProgressCallback
from ichain.transfer.receive import FetchResult, Receiver
from ichain.transfer.transport import Transport, default_transport

MAX_CONCURRENCY = 64
_MAX_BACKOFF = 5.0
# aiohttp pauses the socket whenever this much is buffered; the 64 KiB default means a pause/resume
# cycle every few reads of a multi-MiB chunk.
_READ_BUFSIZE = 1024 * 1024
_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())  # aiohttp >= 3.10 tells it from a read stall


class _LazyExecutor:
    """The chunk-checking threads: as many as CPUs (more only fight over the GIL and the cores)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="ichain-chunk")
        return self._pool


_EXECUTOR = _LazyExecutor()


def default_concurrency() -> int:
    """Parallel streams by default: twice the CPU count, between 2 and 8."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class _Stream:
    """One parallel stream: an HTTP session renewed (new isolation key) after every failure."""

    def __init__(self, transport: Transport, name: str, stall: float, connect: float, buffer_size: int = 0):
        self.transport = transport
        self.name = name
        self.generation = 0
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=stall)
        self.stall = stall
        self.session: aiohttp.ClientSession | None = None
        self.buffer = bytearray(buffer_size)

    def _open(self) -> aiohttp.ClientSession:
        if self.session is None:
            key = f"{self.name}-{self.generation}"
            self.session = aiohttp.ClientSession(
                connector=self.transport.connector(key),
                timeout=self.timeout,
                auto_decompress=False,
                trust_env=False,
                read_bufsize=_READ_BUFSIZE,
            )
        return self.session

    async def renew(self) -> None:
        await self.close()
        self.generation += 1

    async def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    async def get(
        self, url: str, limit: int, what: str, oversized: type[TransferError] = TamperedChunk
    ) -> bytearray | memoryview:
        """GET ``url`` into memory, at most ``limit`` bytes; raises a classified TransferError."""
        try:
            async with self._open().get(url, allow_redirects=False) as resp:
                if resp.status == 404:
                    raise TransferNotFound(f"the host does not serve {what} (withdrawn or wrong address)")
                if resp.status != 200:
                    raise HostUnreachable(f"the host answered HTTP {resp.status} for {what}")
                if resp.content_length is not None and resp.content_length > limit:
                    raise oversized(f"{what} is oversized: {resp.content_length} bytes, at most {limit}")
                # The stream's reused buffer (its previous chunk is done with by now): no allocation and
                # no page faults per chunk. Bodies of unknown length grow a fresh buffer.
                length = resp.content_length
                body: bytearray | memoryview
                if length is not None and length <= len(self.buffer):
                    body = memoryview(self.buffer)[:length]
                else:
                    body = bytearray(length or 0)
                filled = 0
                async for block in resp.content.iter_any():
                    end = filled + len(block)
                    if end > limit:
                        raise oversized(f"{what} is oversized: more than {limit} bytes")
                    if end <= len(body):
                        body[filled:end] = block
                    else:
                        body = bytearray(body[:filled]) + block
                    filled = end
                return body[:filled]  # a short body: the receiver reports it as truncated
        except _CONNECT_TIMEOUT:
            raise HostUnreachable(f"timed out connecting to the host for {what}") from None
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise Stalled(f"no byte of {what} for {self.stall:g} s (host stalled)") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error) or "refused"
            raise HostUnreachable(f"cannot connect to {exc.host}:{exc.port} for {what}: {reason}") from None
        except aiohttp.ClientError as exc:
            raise HostUnreachable(f"cannot get {what}: {type(exc).__name__} {str(exc)[:120]}") from None
        except OSError as exc:
            raise HostUnreachable(f"cannot get {what}: {exc.strerror or exc}") from None


async def _with_retries(stream: _Stream, attempts: int, backoff: float, attempt_once, on_retry=None):
    """Run ``attempt_once()`` up to ``attempts`` times; 404s are final, other failures retry."""
    for attempt in range(1, attempts + 1):
        try:
            return await attempt_once()
        except TransferNotFound:
            raise
        except (TamperedChunk, Stalled, HostUnreachable):
            if attempt == attempts:
                raise
        if on_retry is not None:
            on_retry()
        await stream.renew()
        await asyncio.sleep(min(_MAX_BACKOFF, backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))


async def fetch_async(
    sealed_locator: bytes,
    keypair: KeyPair,
    context: TransferContext,
    dest_file: str | os.PathLike,
    transport: Transport | None = None,
    concurrency: int | None = None,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    *,
    stall_timeout: float | None = None,
    attempts: int = 5,
    backoff: float = 0.25,
    max_size: int | None = None,
    durable: bool = True,
) -> FetchResult:
    """Coroutine form of :func:`fetch` (same arguments)."""
    started = time.monotonic()
    if concurrency is None:
        concurrency = default_concurrency()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise TransferError(f"concurrency must be an integer in 1..{MAX_CONCURRENCY}, got {concurrency!r}")
    if not isinstance(attempts, int) or attempts < 1:
        raise TransferError(f"attempts must be a positive integer, got {attempts!r}")
    opened = open_locator(sealed_locator, keypair, context)
    if max_size is not None and opened.size > max_size:
        raise TransferTooLarge(f"the transfer is {opened.size} bytes, over the limit of {max_size}")
    transport = transport or default_transport(opened.address)
    if not transport.handles(opened.address):
        raise TransportError(f"the {transport.name} transport cannot reach {opened.address}")
    stall = float(stall_timeout or transport.stall_timeout)
    tid = opened.transfer_id.hex()
    base = f"{opened.address.rstrip('/')}/t/{tid}"

    manifest_stream = _Stream(transport, f"{tid[:12]}-m", stall, transport.connect_timeout)
    try:
        manifest_bytes = await _with_retries(
            manifest_stream, attempts, backoff,
            lambda: manifest_stream.get(f"{base}/manifest", MAX_MANIFEST_BYTES, "the manifest", ManifestInvalid),
        )
    finally:
        await manifest_stream.close()
    manifest = Manifest.parse(bytes(manifest_bytes), opened)

    receiver = await asyncio.to_thread(Receiver, opened, manifest, Path(dest_file), resume=resume)
    state = FetchProgress(tid, manifest.size, [manifest.plain_len(i) for i in range(manifest.chunks)])

    def notify() -> None:
        if progress is not None:
            progress(state)  # may raise to abort; the .part and its state are kept for resume

    inflight: set[asyncio.Future] = set()
    try:
        for index in sorted(receiver.verified):
            state.set(index, REUSED)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in receiver.needed():
            queue.put_nowait(index)
        notify()

        async def fetch_one(stream: _Stream, index: int) -> None:
            async def attempt() -> None:
                state.set(index, FETCHING)
                notify()
                data = await stream.get(f"{base}/c/{index}", manifest.cipher_len(index), f"chunk {index}")
                # Shielded: a cancelled fetch must not leave a thread writing into a closed file.
                job = asyncio.get_running_loop().run_in_executor(_EXECUTOR.get(), receiver.accept, index, data)
                inflight.add(job)
                job.add_done_callback(inflight.discard)
                await asyncio.shield(job)

            def retrying() -> None:
                state.set(index, RETRYING)
                notify()

            try:
                await _with_retries(stream, attempts, backoff, attempt, retrying)
            except TransferError:
                state.set(index, FAILED)
                raise
            state.set(index, VERIFIED)
            notify()

        async def worker(number: int) -> None:
            largest = manifest.cipher_len(0)
            stream = _Stream(transport, f"{tid[:12]}-{number}", stall, transport.connect_timeout, largest)
            try:
                while not queue.empty():
                    await fetch_one(stream, queue.get_nowait())
            finally:
                await stream.close()

        tasks = [asyncio.create_task(worker(n)) for n in range(min(concurrency, queue.qsize()))]
        if tasks:
            try:
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:  # the first failure, in worker order
                failure = task.exception() if task.done() and not task.cancelled() else None
                if failure is not None:
                    raise failure
        result = await asyncio.to_thread(
            receiver.finish, fetched=state.fetched, seconds=time.monotonic() - started, durable=durable
        )
    finally:
        if inflight:
            await asyncio.gather(*list(inflight), return_exceptions=True)
        receiver.close()
    state.finished = True
    notify()
    return result


def fetch(
    sealed_locator: bytes,
    keypair: KeyPair,
    context: TransferContext,
    dest_file: str | os.PathLike,
    transport: Transport | None = None,
    concurrency: int | None = None,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    *,
    stall_timeout: float | None = None,
    attempts: int = 5,
    backoff: float = 0.25,
    max_size: int | None = None,
    durable: bool = True,
) -> FetchResult:
    """Fetch, verify and decrypt a transfer into ``dest_file``.

    Nothing reaches ``dest_file`` unless every chunk authenticated and the whole matched; until then
    the plaintext of verified chunks sits in ``dest_file.part`` and the list of them in
    ``dest_file.part.state`` (both kept on failure, for resume).

    Args:
        sealed_locator: The locator from the contract event (sealed to ``keypair``).
        keypair: The recipient's key pair.
        context: The context the sender bound (chain id, market, task id, role, requester, sender key).
        dest_file: Where the plaintext goes.
        transport: How to reach the host (default: direct for http://host:port addresses).
        concurrency: Parallel streams (default :func:`default_concurrency`).
        progress: Called with a :class:`FetchProgress` after each chunk state change (in the thread
            running the fetch's event loop); raise from it to abort (the ``.part`` is kept for resume).
        resume: Reuse verified chunks of an interrupted earlier fetch to the same ``dest_file``.
        stall_timeout: Seconds without a byte before a stream is retried (default: the transport's).
        attempts: Tries per chunk (and for the manifest) before giving up.
        backoff: First retry delay in seconds (doubles per retry, jittered, capped at 5 s).
        max_size: Refuse transfers larger than this many bytes.
        durable: fsync the file before moving it into place (survives power loss; costs disk time).

    Returns:
        The verified result (path, plaintext sha256, sizes, chunks fetched/reused).

    Raises:
        TransferError: A one-line subclass: WrongKey, LocatorInvalid, ManifestInvalid, TamperedChunk,
            HostUnreachable, Stalled, TransferNotFound, TransferTooLarge, DestinationError...
    """
    coro = fetch_async(
        sealed_locator, keypair, context, dest_file, transport, concurrency, progress, resume,
        stall_timeout=stall_timeout, attempts=attempts, backoff=backoff, max_size=max_size, durable=durable,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from inside an event loop (e.g. a web handler)
        return pool.submit(asyncio.run, coro).result()
