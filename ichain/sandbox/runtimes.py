"""The runtime catalog: every image a task may name, what it contains and how its build is checked.

A task's manifest names one of these runtimes (``"image": "ichain-torch"``); a provider runs any of them
it has built (``ape ichain sandbox build NAME|--all``). Each runtime is a Debian package list built from
the host's own release (see ``ichain.sandbox.image``); its recipe, the canonical JSON of everything that
decides the image's content, is hashed into the image's label so a stale image is told from a current one.

Placeholders are empty packages of the same name (or, for an exact-version dependency, a package that
provides it) standing in for dependencies a task never uses: they keep apt's dependency check satisfied
while the files stay out. Only packages nothing links against and nothing runs at import time qualify.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The image a task runs in unless its manifest names another.
RUNTIME_IMAGE = "ichain-runtime"
TORCH_IMAGE = "ichain-torch"
# Bump when the build procedure changes in a way the recipe fields below do not capture.
RECIPE_VERSION = 1

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
# What every smoke test ends with: the sandbox checks that a result file came back.
_SMOKE_RESULT = "open('ok', 'w').write('ok')\n"


@dataclass(frozen=True)
class Runtime:
    """One runtime of the catalog.

    Attributes:
        name: the image name on the engine, and what a task's manifest names.
        description: one line for ``ape ichain sandbox check`` and docs/TASKS.md.
        packages: the Debian packages installed (without recommended packages).
        placeholders: empty stand-ins: ``"name"`` (an empty package of that name, a version above any
            real one) or ``"name (= version)"`` (an empty package that provides exactly that version, for
            an exact-version dependency; when the release moves on, apt installs the real one instead).
        smoke_modules: the modules the image's smoke test imports.
        smoke_code: python run after the imports (a tiny real computation).
        cleanup: shell run in the finished root filesystem (``$1``), to drop files a task never uses.
    """

    name: str
    description: str
    packages: tuple[str, ...]
    placeholders: tuple[str, ...] = ()
    smoke_modules: tuple[str, ...] = ()
    smoke_code: str = ""
    cleanup: str = CLEANUP

    def recipe(self) -> dict[str, Any]:
        """Everything that decides the image's content; its hash labels the image."""
        return {
            "version": RECIPE_VERSION,
            "suite": host_suite(),
            "packages": list(self.packages),
            "placeholders": list(self.placeholders),
            "dpkg_options": list(DPKG_OPTIONS),
            "cleanup": self.cleanup,
            "changes": list(IMAGE_CHANGES),
        }

    def recipe_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of ``recipe()``."""
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()

    def smoke_script(self) -> str:
        """The smoke test's entry script: import the stack, compute a little, write a result file."""
        imports = f"import {', '.join(self.smoke_modules)}\n" if self.smoke_modules else ""
        return imports + self.smoke_code + _SMOKE_RESULT


_BASE_PACKAGES: tuple[str, ...] = (
    "python3-minimal",
    "python3-numpy",
    "python3-sklearn",
    # An optimised BLAS (43 MB); without it apt picks the slow reference BLAS.
    "libopenblas0-pthread",
)
# Debian's python3-scipy depends on python3-pythran, a build-time compiler that drags in g++, boost
# and python3-dev (~550 MB).
_BASE_PLACEHOLDERS: tuple[str, ...] = ("python3-pythran",)

CATALOG: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        Runtime(
            name=RUNTIME_IMAGE,
            description="python3 with numpy, scipy and scikit-learn (CPU)",
            packages=_BASE_PACKAGES,
            placeholders=_BASE_PLACEHOLDERS,
            smoke_modules=("numpy", "scipy", "sklearn", "sklearn.datasets"),
            # Loads a bundled data set, as real tasks do.
            smoke_code="sklearn.datasets.load_digits()\n",
        ),
        Runtime(
            name=TORCH_IMAGE,
            description="ichain-runtime plus PyTorch, torchvision and pandas (CPU builds)",
            packages=(*_BASE_PACKAGES, "python3-torch", "python3-torchvision", "python3-pandas"),
            placeholders=(
                *_BASE_PLACEHOLDERS,
                # The GLX vendor library is only loaded when a program opens an OpenGL context (opencv's
                # GUI, linked by libtorch): it alone pulls Mesa's drivers and LLVM (~170 MB).
                "libglx-mesa0",
                # C++ test binaries of libtorch, nothing loads them (51 MB); python3-torch wants this exact
                # version.
                "libtorch-test (= 1.13.1+dfsg-4)",
                # /etc/mailcap and a perl script to update it: pulls perl (~47 MB).
                "mailcap",
                # Language and country names for gstreamer's tag code, used by opencv's video I/O (20 MB).
                "iso-codes",
                # Map projection grids for libproj, reached only through GDAL's reprojection (23 MB).
                "proj-data",
                # Keyboard layouts for Qt's keyboard input, i.e. a GUI (7 MB).
                "xkb-data",
            ),
            smoke_modules=("numpy", "pandas", "torch", "torchvision"),
            smoke_code=(
                "x = torch.arange(6, dtype=torch.float32).reshape(2, 3)\n"
                "y = torch.nn.functional.relu(x @ x.T - 10).sum()\n"
                "assert float(y) == 48.0, float(y)\n"
                "assert pandas.DataFrame({'a': [1, 2]})['a'].sum() == 3\n"
                "torchvision.transforms.Normalize((0.5,), (0.5,))(torch.zeros(1, 2, 2))\n"
            ),
            # PyTorch's own C++ test programs (28 MB); torch_shm_manager is no test: torch needs it to import.
            cleanup=CLEANUP
            + ' && find "$1"/usr/lib/python3/dist-packages/torch/bin -type f ! -name torch_shm_manager -delete',
        ),
    )
}


def runtime_names() -> tuple[str, ...]:
    """Every runtime of the catalog, in catalog order."""
    return tuple(CATALOG)


def get_runtime(name: str) -> Runtime | None:
    """The catalog entry ``name``, or None."""
    return CATALOG.get(name)


def host_suite() -> str:
    """The Debian release code name of this machine (the images are built from the same release)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    return fields.get("VERSION_CODENAME") or "bookworm"
