"""Progress of a fetch: per-chunk states, a JSON-able snapshot for the web page, a CLI progress bar."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # what click.progressbar returns; click exports no alias

PENDING = "pending"
FETCHING = "fetching"
RETRYING = "retrying"
VERIFIED = "verified"
REUSED = "reused"
FAILED = "failed"
STATES = (PENDING, FETCHING, RETRYING, VERIFIED, REUSED, FAILED)


class FetchProgress:
    """Live state of one fetch; the fetcher updates it and calls the progress callback with it.

    Attributes:
        transfer_id: The transfer id (hex).
        size: Plaintext bytes in total.
        states: One of :data:`STATES` per chunk.
        done_bytes: Plaintext bytes verified so far (fetched or reused).
        fetched: Chunks fetched and verified in this run.
        reused: Chunks reused from an earlier, interrupted run.
        retries: Chunk attempts that failed and were retried.
        finished: True once the file is verified and in place.
    """

    def __init__(self, transfer_id: str, size: int, chunk_sizes: list[int]):
        self.transfer_id = transfer_id
        self.size = size
        self.states = [PENDING] * len(chunk_sizes)
        self._sizes = chunk_sizes
        self.done_bytes = 0
        self.fetched = 0
        self.reused = 0
        self.retries = 0
        self.finished = False
        self.started = time.monotonic()

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.states)

    def set(self, index: int, state: str) -> None:
        """Move chunk ``index`` to ``state`` (counts bytes and chunks on verified/reused)."""
        self.states[index] = state
        if state == VERIFIED:
            self.fetched += 1
            self.done_bytes += self._sizes[index]
        elif state == REUSED:
            self.reused += 1
            self.done_bytes += self._sizes[index]
        elif state == RETRYING:
            self.retries += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for the web page (states as one string, one letter per chunk, and counts)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "transfer": self.transfer_id,
            "size": self.size,
            "chunks": self.chunks,
            "done_bytes": self.done_bytes,
            "fraction": (self.done_bytes / self.size) if self.size else float(self.finished),
            "fetched": self.fetched,
            "reused": self.reused,
            "retries": self.retries,
            "finished": self.finished,
            "elapsed": round(elapsed, 3),
            "bytes_per_second": round(self.done_bytes / elapsed),
            "counts": dict(Counter(self.states)),
            # p=pending f=fetching r=retrying v=verified u=reused x=failed
            "map": "".join({PENDING: "p", FETCHING: "f", RETRYING: "r", VERIFIED: "v", REUSED: "u", FAILED: "x"}[s]
                           for s in self.states),
        }


ProgressCallback = Callable[[FetchProgress], None]


@contextmanager
def progress_bar(label: str = "fetching", *, file=None):
    """A CLI progress bar (click) driven by the fetch progress callback.

    Usage::

        with progress_bar("result") as on_progress:
            fetch(sealed, keypair, context, dest, progress=on_progress)

    Yields:
        The callback to pass as ``progress=``.
    """
    bar: ProgressBar[int] | None = None
    shown = 0

    def on_progress(progress: FetchProgress) -> None:
        nonlocal bar, shown
        if bar is None:
            bar = click.progressbar(
                length=max(progress.size, 1), label=label, file=file, show_pos=False, show_percent=True, width=30
            )
            bar.__enter__()
        done = progress.size if progress.finished else progress.done_bytes
        if done > shown:
            bar.update(done - shown)
            shown = done

    try:
        yield on_progress
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
