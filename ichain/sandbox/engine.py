"""The Docker engine: the connection every sandbox part uses, and what it can tell about itself.

Both the runner (which starts containers) and the image build (which smoke-tests what it built in the
runner) talk to the engine through this module, so neither has to import the other for it.
"""

from __future__ import annotations

import os
from typing import Any

import docker
import docker.errors

from ichain.sandbox.errors import EngineUnavailable, ImageMissing
from ichain.sandbox.task import RUNTIME_IMAGE


def docker_client(timeout: float = 60) -> docker.DockerClient:
    """Connect to the Docker engine named by the environment (``DOCKER_HOST`` or the default socket).

    Args:
        timeout: seconds each API call may take.

    Returns:
        A client whose engine answered a ping.

    Raises:
        EngineUnavailable: the engine does not answer.
    """
    try:
        client = docker.DockerClient.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnavailable(
            f"Docker engine not reachable at {where} ({type(exc).__name__}) — start dockerd or run 'make setup'"
        ) from None
    return client


def require_image(client: docker.DockerClient, name: str) -> None:
    """Check that the image ``name`` is on the engine; never pulls.

    Raises:
        ImageMissing: it is not there (one line, saying how to get it).
    """
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        hint = "run 'ape ichain sandbox build'" if name.split(":")[0] == RUNTIME_IMAGE else "build or load it first"
        raise ImageMissing(f"runtime image '{name}' is not on this Docker engine — {hint}") from None


def engine_report(client: docker.DockerClient) -> dict[str, Any]:
    """Engine facts for ``ape ichain sandbox check``: version, cgroup, runtimes (runc, runsc...)."""
    info = client.info()
    return {
        "server_version": info.get("ServerVersion", "?"),
        "cgroup_version": str(info.get("CgroupVersion", "?")),
        "cgroup_driver": info.get("CgroupDriver", "?"),
        "runtimes": sorted((info.get("Runtimes") or {}).keys()),
        "default_runtime": info.get("DefaultRuntime", "?"),
        "security_options": info.get("SecurityOptions") or [],
    }
