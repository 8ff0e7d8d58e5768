"""Errors raised by the sandbox: each one is a one-line ``IChainError``."""

from ichain.errors import IChainError


class SandboxError(IChainError):
    """Base of every sandbox error."""


class TaskFormatError(SandboxError):
    """A task folder (entry script, manifest, files) is not valid."""


class TaskUnsupported(SandboxError):
    """A valid task this provider can never run as asked (a runtime it does not offer, GPUs it cannot pass)."""


class PackageError(SandboxError):
    """A task or result package is malformed, unsafe or too large."""


class EngineUnavailable(SandboxError):
    """The Docker engine does not answer."""


class ImageMissing(SandboxError):
    """The runtime image is not built (tasks never trigger a pull or a build)."""


class ImageBuildError(SandboxError):
    """Building the runtime image failed."""
