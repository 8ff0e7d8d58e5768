"""Run the web app with uvicorn in a background thread (tests, demos, embedding)."""

from __future__ import annotations

import socket
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from ichain.web.errors import WebError
from ichain.web.security import PageGuard


class Server(uvicorn.Server):
    """uvicorn's server, telling the app's live streams to end when asked to exit (Ctrl-C, stop()),
    so shutdown does not wait for open browser tabs."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        mark_closing(self.config.app)
        super().handle_exit(sig, frame)


def mark_closing(app: object) -> None:
    """Ask the app's live streams to finish (see ``/api/live``)."""
    state = getattr(app, "state", None)
    if state is not None:
        state.closing = True


class BackgroundServer:
    """uvicorn serving one app on 127.0.0.1 (a free port unless given), in a daemon thread.

    Use as a context manager; ``url`` (the bare origin) is ready once ``start()`` returns, and
    :meth:`page_url` gives the URL a browser opens (with the per-launch secret: every other request
    is refused, see :mod:`ichain.web.security`).

    Args:
        app: The FastAPI app (see :func:`ichain.web.create_app`).
        port: Port on 127.0.0.1; 0 lets the OS choose a free one.
    """

    def __init__(self, app: FastAPI, port: int = 0) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.guard: PageGuard = app.state.guard
        self.guard.bind(self.port)  # the Host names and origins it accepts name this port
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="ichain-web", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        """Start serving; returns once the server accepts requests."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise WebError(f"the web server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def page_url(self, path: str = "/") -> str:
        """The URL that signs a browser in and lands on ``path`` (``?token=`` the secret).

        Args:
            path: A path on the page, with or without a query.
        """
        return self.guard.url(path)

    def stop(self) -> None:
        """Stop serving (open live streams are cut after a short grace period)."""
        mark_closing(self.app)
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
