"""Small networking helpers shared by the chunk host, the daemon, the requester and the Tor test network."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that the OS says is free right now.

    Another process may take it before the caller binds it; callers that can bind port 0 themselves
    should do that instead. Used where a fixed port must be named before binding (locators on chain
    name the chunk host's port; tor needs fixed ports in its descriptors).
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
