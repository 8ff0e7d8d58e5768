"""The runtime images (``ichain-runtime``, ``ichain-torch``...): built locally, labelled with the hash of their recipe.

What each image contains is the runtime catalog's business (``ichain.sandbox.runtimes``); this module builds
it. No image registry may be reachable, so the default build makes a minimal Debian root filesystem with
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
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import docker
import docker.errors

from ichain.sandbox.engine import RECIPE_LABEL, ImageStatus, docker_client, image_status
from ichain.sandbox.errors import ImageBuildError
from ichain.sandbox.runner import Sandbox
from ichain.sandbox.runtimes import (
    DPKG_OPTIONS,
    IMAGE_CHANGES,
    RECIPE_VERSION,
    RUNTIME_IMAGE,
    Runtime,
    get_runtime,
    host_suite,
    runtime_names,
)

HOOKS = Path("/usr/share/mmdebstrap/hooks")
# One lock for every runtime: builds are heavy, and one at a time per machine is enough.
BUILD_LOCK = Path(tempfile.gettempdir()) / "ichain-runtime-build.lock"
# The tag a new image is built and smoke-tested under before it takes the image's name.
CANDIDATE_TAG = "ichain-candidate"
# Placeholder packages: a version above any real one, so apt never prefers the real package.
_PLACEHOLDER_VERSION = "99:0-ichain1"


def _entry(name: str) -> Runtime:
    runtime = get_runtime(name)
    if runtime is None:
        raise ImageBuildError(f"unknown runtime '{name}' (known: {', '.join(runtime_names())})")
    return runtime


def recipe(name: str = RUNTIME_IMAGE) -> dict[str, Any]:
    """Everything that decides the runtime ``name``'s image content; its hash labels the image.

    Raises:
        ImageBuildError: ``name`` is not a catalog runtime.
    """
    return _entry(name).recipe()


def recipe_hash(name: str = RUNTIME_IMAGE) -> str:
    """sha256 (hex) of the canonical JSON of ``recipe(name)``.

    Raises:
        ImageBuildError: ``name`` is not a catalog runtime.
    """
    return _entry(name).recipe_hash()


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
    runtime: str | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> ImageStatus:
    """Build a runtime's image unless an up-to-date one is already there.

    Args:
        client: Docker client (default: ``docker_client()``).
        name: image name to create.
        runtime: the catalog runtime to build (default: the one named ``name``; an image of another name,
            a throwaway build for instance, must say which).
        force: rebuild even when the recipe label matches.
        log: called with one-line progress messages (nothing is printed when the image is current).

    Returns:
        The image's status after the call (``built`` tells whether anything was done, ``seconds`` how long
        the build and its smoke test took).

    Raises:
        EngineUnavailable: no Docker engine.
        ImageBuildError: unknown runtime, or the build or its smoke test failed (the message names the log
            file).
    """
    entry = _entry(runtime or name)
    client = client or docker_client()
    say = log or (lambda _msg: None)
    with _build_lock():
        status = image_status(client, name, entry.name)
        if status.up_to_date and not force:
            return status
        started = time.monotonic()
        old_id = status.image_id
        # Built and smoke-tested under a candidate tag: the image of that name stays usable (running tasks,
        # other users of the engine) until a new one has passed, and stays as it was when the build fails.
        candidate = f"{name}:{CANDIDATE_TAG}"
        try:
            if registry_answers(client):
                say(f"image: a registry answers; building {name} from a Dockerfile")
                _build_from_dockerfile(client, candidate, entry, say)
            else:
                _build_with_mmdebstrap(client, candidate, entry, say)
            _smoke_test(client, candidate, entry.name)
            client.api.tag(candidate, name, "latest")
        finally:
            with contextlib.suppress(docker.errors.APIError):
                # Only the tag goes when the image passed (it is now also name:latest); all of it otherwise.
                client.api.remove_image(candidate)
        new = image_status(client, name, entry.name)
        if old_id and old_id != new.image_id:
            # The old image lost its name; drop it unless a container still uses it.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old_id)
        seconds = time.monotonic() - started
        say(f"image: {name} ready ({new.size / 1e6:.0f} MB, recipe {new.recipe[:12]}, {seconds:.0f} s)")
        return dataclasses.replace(new, built=True, seconds=seconds)


def _placeholder_debs(folder: Path, placeholders: tuple[str, ...]) -> list[Path]:
    """Empty packages standing in for dependencies a task never uses (see ``Runtime.placeholders``)."""
    debs = []
    for spec in placeholders:
        target, _, version = spec.partition(" (= ")
        if version:
            # An exact-version dependency: a package of its own name provides that very version.
            package = f"ichain-placeholder-{target}"
            provides = f"Provides: {target} (= {version.rstrip(')')})\n"
        else:
            package, provides = target, ""
        root = folder / package / "DEBIAN"
        root.mkdir(parents=True)
        (root / "control").write_text(
            f"Package: {package}\nVersion: {_PLACEHOLDER_VERSION}\nArchitecture: all\n"
            f"Maintainer: iChain <ichain@localhost>\n{provides}"
            "Description: placeholder for a dependency the iChain runtime images never use\n"
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


def _build_with_mmdebstrap(client: docker.DockerClient, name: str, entry: Runtime, say: Callable[[str], None]) -> None:
    """Build ``entry`` into the image ``name`` (``repository[:tag]``) from the host's own apt sources."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap not found and no image registry answers — apt-get install mmdebstrap")
    suite = host_suite()
    work = Path(tempfile.mkdtemp(prefix="ichain-image-"))
    log_file = work / "build.log"
    ok = False
    try:
        say(f"image: building {name.partition(':')[0]} with mmdebstrap from the host's {suite} sources (2-10 minutes)")
        debs = _placeholder_debs(work, entry.placeholders)
        rootfs = work / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=essential",
            "--include=" + ",".join([*entry.packages, *map(str, debs)]),
            f"--hook-dir={HOOKS / 'merged-usr'}",
            # Lets apt inside the chroot see the placeholder .deb files.
            f"--hook-dir={HOOKS / 'file-mirror-automount'}",
            '--aptopt=APT::Install-Recommends "false"',
            *[f"--dpkgopt={opt}" for opt in DPKG_OPTIONS],
            f"--customize-hook={entry.cleanup}",
            suite,
            str(rootfs),
            *_host_sources(suite),
        ]
        _run(cmd, log_file)
        say("image: importing the root filesystem into Docker")
        try:
            repository, _, tag = name.partition(":")
            client.api.import_image(
                src=str(rootfs),
                repository=repository,
                tag=tag or "latest",
                changes=[*IMAGE_CHANGES, f"LABEL {RECIPE_LABEL}={entry.recipe_hash()}"],
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


def _build_from_dockerfile(client: docker.DockerClient, name: str, entry: Runtime, say: Callable[[str], None]) -> None:
    """Build ``entry`` into the image ``name`` (``repository[:tag]``) on Debian's slim image."""
    work = Path(tempfile.mkdtemp(prefix="ichain-image-"))
    try:
        debs = _placeholder_debs(work, entry.placeholders)
        (work / "dpkg-slim.cfg").write_text("\n".join(DPKG_OPTIONS) + "\n")
        dockerfile = [
            f"FROM debian:{host_suite()}-slim",
            "COPY dpkg-slim.cfg /etc/dpkg/dpkg.cfg.d/ichain-slim",
            *[f"COPY {deb.name} /tmp/" for deb in debs],
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            + " ".join([*entry.packages, *[f"/tmp/{deb.name}" for deb in debs]])
            + " && rm -rf /var/lib/apt/lists/* && " + entry.cleanup.replace('"$1"', ""),
            *IMAGE_CHANGES,
        ]
        (work / "Dockerfile").write_text("\n".join(dockerfile) + "\n")
        try:
            client.images.build(
                path=str(work), tag=name if ":" in name else f"{name}:latest", labels={RECIPE_LABEL: entry.recipe_hash()},
                rm=True, forcerm=True,
            )
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"docker build failed: {str(exc).splitlines()[0][:200]}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _smoke_test(client: docker.DockerClient, name: str, runtime: str | None = None) -> None:
    """The image ``name`` must pass its runtime's smoke test (offline, as nobody, in a hardened container).

    Args:
        client: Docker client.
        name: the image to test.
        runtime: the catalog runtime it was built for (default: the one named ``name``).
    """
    entry = _entry(runtime or name)
    box = Sandbox(entry.name, client=client, runtime=None, allowed_images=(), image_names={entry.name: name})
    run = box.self_test()
    if not run.ok:
        stderr = run.stderr_tail.strip().splitlines()
        detail = run.error or (stderr[-1] if stderr else f"exit {run.exit_code}")
        raise ImageBuildError(f"the new image fails its smoke test: {detail}")


__all__ = [
    "BUILD_LOCK",
    "RECIPE_LABEL",
    "RECIPE_VERSION",
    "ImageStatus",
    "build_image",
    "host_suite",
    "image_status",
    "recipe",
    "recipe_hash",
    "registry_answers",
]
