"""The Docker engine: the connection every sandbox part uses, and what it can tell about itself.

Both the runner (which starts containers, and lists the runtimes it can offer) and the image build
(which smoke-tests what it built in the runner) talk to the engine through this module, so neither has
to import the other for it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import docker
import docker.errors

from ichain.sandbox.errors import EngineUnavailable, ImageMissing
from ichain.sandbox.runtimes import RUNTIME_IMAGE, Runtime, get_runtime

RECIPE_LABEL = "ichain.recipe"


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
        base = name.split(":")[0]
        if base == RUNTIME_IMAGE:
            hint = "run 'ape ichain sandbox build'"
        elif get_runtime(base) is not None:
            hint = f"run 'ape ichain sandbox build {base}'"
        else:
            hint = "build or load it first"
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


@dataclasses.dataclass(frozen=True)
class ImageStatus:
    """What the engine holds under a runtime image's name.

    Attributes:
        name: image name (``ichain-runtime``, ``ichain-torch``...).
        present: an image of that name exists.
        up_to_date: its recipe label equals the current recipe hash of its runtime.
        image_id: the engine's image id, or ``""``.
        size: image size in bytes (0 when absent).
        recipe: the recipe hash the image carries (``""`` when absent or unlabelled).
        built: True when this call built it.
        seconds: how long the call took when it built the image (0 otherwise).
    """

    name: str
    present: bool
    up_to_date: bool
    image_id: str = ""
    size: int = 0
    recipe: str = ""
    built: bool = False
    seconds: float = 0.0


def image_status(client: docker.DockerClient, name: str = RUNTIME_IMAGE, runtime: str | None = None) -> ImageStatus:
    """Inspect the image ``name`` on the engine (no pull, no build).

    Args:
        client: Docker client.
        name: image name.
        runtime: the catalog runtime whose recipe the image should carry (default: the one named ``name``;
            an image of another name is then never up to date).
    """
    entry: Runtime | None = get_runtime(runtime or name)
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return ImageStatus(name=name, present=False, up_to_date=False)
    label = (image.labels or {}).get(RECIPE_LABEL, "")
    return ImageStatus(
        name=name,
        present=True,
        up_to_date=entry is not None and label == entry.recipe_hash(),
        image_id=image.id,
        size=int(image.attrs.get("Size") or 0),
        recipe=label,
    )
