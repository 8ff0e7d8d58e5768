"""The runtime image ``ichain-runtime``: built locally, labelled with the hash of its recipe.

No image registry may be reachable, so the default build makes a minimal Debian root filesystem with
``mmdebstrap`` from the host's own apt sources (``--variant=essential``, no recommended packages, no
docs/man/locales/test suites) and turns it into an image with ``docker import``. When a registry does
answer, the same package list is installed on ``debian:<suite>-slim`` from a Dockerfile instead.

The image carries the label ``ichain.recipe=<sha256 of the recipe>``: ``build_image`` does nothing when
the image on the engine already carries the current hash, so ``make setup`` stays fast. Tasks never
build or pull anything: the runner only checks that the image is there (``ImageMissing`` otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import docker
import docker.errors

from ichain.sandbox.engine import docker_client
from ichain.sandbox.errors import ImageBuildError
from ichain.sandbox.runner import Sandbox
from ichain.sandbox.task import RUNTIME_IMAGE

RECIPE_LABEL = "ichain.recipe"
# Bump when the build procedure changes in a way the recipe fields below do not capture.
RECIPE_VERSION = 1

PACKAGES: tuple[str, ...] = (
    "python3-minimal",
    "python3-numpy",
    "python3-sklearn",
    # An optimised BLAS (43 MB); without it apt picks the slow reference BLAS.
    "libopenblas0-pthread",
)
# Debian's python3-scipy depends on python3-pythran, a build-time compiler that drags in g++, boost
# and python3-dev (~550 MB). An empty package of the same name (the equivs technique) satisfies it.
PLACEHOLDERS: tuple[str, ...] = ("python3-pythran",)
DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# Run in the finished root filesystem ($1): drop the libraries' own test suites (~50 MB; the
# packages' postinst scripts need them at install time) and any build leftovers.
CLEANUP = (
    'find "$1"/usr/lib/python3/dist-packages -depth -type d -name tests -exec rm -rf {} +'
    ' && rm -rf "$1"/tmp/* "$1"/var/cache/* "$1"/var/log/*'
)
# Image metadata: tasks run as nobody in /work with unbuffered, bytecode-free python.
IMAGE_CHANGES: tuple[str, ...] = (
    "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
    "WORKDIR /work",
    "USER 65534:65534",
    'CMD ["python3"]',
)
HOOKS = Path("/usr/share/mmdebstrap/hooks")
BUILD_LOCK = Path(tempfile.gettempdir()) / "ichain-runtime-build.lock"


def host_suite() -> str:
    """The Debian release code name of this machine (the image is built from the same release)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    return fields.get("VERSION_CODENAME") or "bookworm"


def recipe() -> dict[str, Any]:
    """Everything that decides the image's content; its hash labels the image."""
    return {
        "version": RECIPE_VERSION,
        "suite": host_suite(),
        "packages": list(PACKAGES),
        "placeholders": list(PLACEHOLDERS),
        "dpkg_options": list(DPKG_OPTIONS),
        "cleanup": CLEANUP,
        "changes": list(IMAGE_CHANGES),
    }


def recipe_hash() -> str:
    """sha256 (hex) of the canonical JSON of ``recipe()``."""
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ImageStatus:
    """What the engine holds under the runtime image's name.

    Attributes:
        name: image name (``ichain-runtime``).
        present: an image of that name exists.
        up_to_date: its recipe label equals the current recipe hash.
        image_id: the engine's image id, or ``""``.
        size: image size in bytes (0 when absent).
        recipe: the recipe hash the image carries (``""`` when absent or unlabelled).
        built: True when this call built it.
    """

    name: str
    present: bool
    up_to_date: bool
    image_id: str = ""
    size: int = 0
    recipe: str = ""
    built: bool = False


def image_status(client: docker.DockerClient, name: str = RUNTIME_IMAGE) -> ImageStatus:
    """Inspect the image ``name`` on the engine (no pull, no build)."""
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return ImageStatus(name=name, present=False, up_to_date=False)
    label = (image.labels or {}).get(RECIPE_LABEL, "")
    return ImageStatus(
        name=name,
        present=True,
        up_to_date=label == recipe_hash(),
        image_id=image.id,
        size=int(image.attrs.get("Size") or 0),
        recipe=label,
    )


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build per machine at a time (concurrent setup runs and test sessions may race)."""
    with open(BUILD_LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def registry_answers(client: docker.DockerClient) -> bool:
    """True when the engine can reach an image registry (it asks for the base image's manifest)."""
    try:
        client.api.inspect_distribution(f"debian:{host_suite()}-slim")
    except Exception:
        return False
    return True


def build_image(
    client: docker.DockerClient | None = None,
    name: str = RUNTIME_IMAGE,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> ImageStatus:
    """Build the runtime image unless an up-to-date one is already there.

    Args:
        client: Docker client (default: ``docker_client()``).
        name: image name to create.
        force: rebuild even when the recipe label matches.
        log: called with one-line progress messages (nothing is printed when the image is current).

    Returns:
        The image's status after the call (``built`` tells whether anything was done).

    Raises:
        EngineUnavailable: no Docker engine.
        ImageBuildError: the build or its smoke test failed (the message names the log file).
    """
    client = client or docker_client()
    say = log or (lambda _msg: None)
    with _build_lock():
        status = image_status(client, name)
        if status.up_to_date and not force:
            return status
        old_id = status.image_id
        if registry_answers(client):
            say("image: a registry answers; building from the Dockerfile")
            _build_from_dockerfile(client, name, say)
        else:
            _build_with_mmdebstrap(client, name, say)
        _smoke_test(client, name)
        new = image_status(client, name)
        if old_id and old_id != new.image_id:
            # The old image lost its name; drop it unless a container still uses it.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old_id)
        say(f"image: {name} ready ({new.size / 1e6:.0f} MB, recipe {new.recipe[:12]})")
        return dataclasses.replace(new, built=True)


def _placeholder_debs(folder: Path) -> list[Path]:
    """Empty packages standing in for build-time-only dependencies (see ``PLACEHOLDERS``)."""
    debs = []
    for package in PLACEHOLDERS:
        root = folder / package / "DEBIAN"
        root.mkdir(parents=True)
        (root / "control").write_text(
            f"Package: {package}\nVersion: 99:0-ichain1\nArchitecture: all\n"
            "Maintainer: iChain <ichain@localhost>\n"
            "Description: placeholder for a build-time-only dependency of the iChain runtime image\n"
        )
        deb = folder / f"{package}_placeholder.deb"
        _run(["dpkg-deb", "--root-owner-group", "--build", str(root.parent), str(deb)], folder / "dpkg-deb.log")
        debs.append(deb)
    return debs


def _host_sources(suite: str) -> list[str]:
    """The host's apt source files that serve ``suite`` (other vendors' repositories are left out)."""
    candidates = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    found = []
    for path in candidates:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if any(suite in line and not line.lstrip().startswith("#") for line in text.splitlines()):
            found.append(str(path))
    return found


def _run(cmd: list[str], log_file: Path) -> None:
    with open(log_file, "ab") as log:
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
        except FileNotFoundError:
            raise ImageBuildError(f"'{cmd[0]}' not found — install it (apt-get install {cmd[0]})") from None
    if proc.returncode != 0:
        last = ""
        with contextlib.suppress(OSError):
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("E:")] or lines
            last = errors[-1][:200] if errors else ""
        raise ImageBuildError(f"{cmd[0]} failed (exit {proc.returncode}): {last} — full log: {log_file}")


def _build_with_mmdebstrap(client: docker.DockerClient, name: str, say: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap not found and no image registry answers — apt-get install mmdebstrap")
    suite = host_suite()
    work = Path(tempfile.mkdtemp(prefix="ichain-image-"))
    log_file = work / "build.log"
    ok = False
    try:
        say(f"image: building {name} with mmdebstrap from the host's {suite} sources (2-5 minutes)")
        debs = _placeholder_debs(work)
        rootfs = work / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=essential",
            "--include=" + ",".join([*PACKAGES, *map(str, debs)]),
            f"--hook-dir={HOOKS / 'merged-usr'}",
            # Lets apt inside the chroot see the placeholder .deb files.
            f"--hook-dir={HOOKS / 'file-mirror-automount'}",
            '--aptopt=APT::Install-Recommends "false"',
            *[f"--dpkgopt={opt}" for opt in DPKG_OPTIONS],
            f"--customize-hook={CLEANUP}",
            suite,
            str(rootfs),
            *_host_sources(suite),
        ]
        _run(cmd, log_file)
        say("image: importing the root filesystem into Docker")
        try:
            client.api.import_image(
                src=str(rootfs),
                repository=name,
                tag="latest",
                changes=[*IMAGE_CHANGES, f"LABEL {RECIPE_LABEL}={recipe_hash()}"],
            )
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"docker import failed: {exc.explanation or exc}") from None
        ok = True
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            # Keep only the log for diagnosis.
            with contextlib.suppress(OSError):
                (work / "rootfs.tar").unlink(missing_ok=True)


def _build_from_dockerfile(client: docker.DockerClient, name: str, say: Callable[[str], None]) -> None:
    work = Path(tempfile.mkdtemp(prefix="ichain-image-"))
    try:
        debs = _placeholder_debs(work)
        (work / "dpkg-slim.cfg").write_text("\n".join(DPKG_OPTIONS) + "\n")
        dockerfile = [
            f"FROM debian:{host_suite()}-slim",
            "COPY dpkg-slim.cfg /etc/dpkg/dpkg.cfg.d/ichain-slim",
            *[f"COPY {deb.name} /tmp/" for deb in debs],
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            + " ".join([*PACKAGES, *[f"/tmp/{deb.name}" for deb in debs]])
            + " && rm -rf /var/lib/apt/lists/* && " + CLEANUP.replace('"$1"', ""),
            *IMAGE_CHANGES,
        ]
        (work / "Dockerfile").write_text("\n".join(dockerfile) + "\n")
        try:
            client.images.build(
                path=str(work), tag=f"{name}:latest", labels={RECIPE_LABEL: recipe_hash()}, rm=True, forcerm=True
            )
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"docker build failed: {str(exc).splitlines()[0][:200]}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _smoke_test(client: docker.DockerClient, name: str) -> None:
    """The new image must pass the sandbox's self-test (offline, as nobody, in a hardened container)."""
    run = Sandbox(name, client=client, runtime=None).self_test()
    if not run.ok:
        stderr = run.stderr_tail.strip().splitlines()
        detail = run.error or (stderr[-1] if stderr else f"exit {run.exit_code}")
        raise ImageBuildError(f"the new image fails its smoke test: {detail}")
