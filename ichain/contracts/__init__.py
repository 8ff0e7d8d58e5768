"""The contract types of TaskMarket and Ratings, from the manifest packaged with iChain (no compiler needed).

``manifest.json`` in this package is an EIP-2678 package manifest (read with ``ethpm_types``) written by
``make manifest`` (tools/build_manifest.py) from ``contracts/``: the ABIs, the creation and runtime bytecode, the
sources with the compiler's settings and version. Its ``x-ichain`` key (ignored by ethpm readers) holds what a
deployment check and a block explorer need beyond that: each contract's immutable-reference ranges in its runtime
code (filled in per deployment, so they are masked when comparing) and the full compiler version string.

A wheel install therefore loads and deploys the contracts without ape-solidity, solc or node; the test suite checks
that the committed manifest matches a fresh compile of ``contracts/``. This package sits in the bottom layer (beside
:mod:`ichain.deployments`, which deploys from it) so that both the registry and the :class:`ichain.market.Market`
SDK above it load the same types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichain.errors import IChainError

if TYPE_CHECKING:
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType, PackageManifest

MANIFEST_PATH = Path(__file__).resolve().with_name("manifest.json")
CONTRACT_NAMES = ("TaskMarket", "Ratings")
#: The key of the manifest that carries iChain's additions (ethpm readers ignore unknown keys).
EXTRA_KEY = "x-ichain"


class ManifestError(IChainError):
    """The packaged manifest is missing or unreadable, or lacks a contract."""


class BytecodeMismatch(IChainError):
    """The code at an address is not the manifest's runtime bytecode of that contract."""


@dataclass(frozen=True)
class PackagedContracts:
    """The packaged manifest, parsed.

    Attributes:
        manifest: The EIP-2678 package manifest.
        immutables: Per contract name, the ``(start, length)`` byte ranges of its runtime code that hold
            immutables (set by the constructor, so they differ per deployment).
        compiler_version: Full solc version (``v0.8.28+commit.7893614a``), as block explorers want it.
        standard_input: The exact solc standard-JSON input the contracts were compiled from (byte-exact sources:
            the bytecode's metadata hash covers them, so an explorer's verifier needs them unchanged).
        path: Where the manifest was read from.
    """

    manifest: PackageManifest
    immutables: dict[str, tuple[tuple[int, int], ...]]
    compiler_version: str
    standard_input: dict[str, Any]
    path: Path

    def contract_type(self, name: str) -> ContractType:
        """The contract type of ``name`` (``TaskMarket`` or ``Ratings``).

        Raises:
            ManifestError: The manifest has no such contract.
        """
        found = (self.manifest.contract_types or {}).get(name)
        if found is None:
            raise ManifestError(f"the packaged manifest {self.path} has no contract {name}")
        return found



def _load(path: Path) -> PackagedContracts:
    from ethpm_types import PackageManifest

    try:
        raw = json.loads(path.read_text())
        manifest = PackageManifest.model_validate(raw)
    except OSError as err:
        raise ManifestError(f"cannot read the packaged contract manifest {path}: {err.strerror}") from None
    except ValueError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ManifestError(f"the packaged contract manifest {path} is invalid: {first}") from None
    extra = raw.get(EXTRA_KEY) or {}
    immutables = {
        name: tuple((int(start), int(length)) for start, length in ranges)
        for name, ranges in (extra.get("immutableReferences") or {}).items()
    }
    return PackagedContracts(manifest, immutables, str(extra.get("compilerVersion", "")),
                             dict(extra.get("standardInput") or {}), path)


@lru_cache(maxsize=4)
def packaged(path: Path = MANIFEST_PATH) -> PackagedContracts:
    """The packaged manifest (read once per path).

    Raises:
        ManifestError: Missing or unreadable.
    """
    return _load(Path(path))


def contract_type(name: str) -> ContractType:
    """The packaged contract type of ``TaskMarket`` or ``Ratings``."""
    return packaged().contract_type(name)


def container(name: str) -> ContractContainer:
    """An ape ``ContractContainer`` of the packaged ``name``: ``container("TaskMarket").deploy(...)``, ``.at(...)``."""
    from ape.contracts import ContractContainer

    return ContractContainer(contract_type(name))


def _masked(code: bytes, ranges: tuple[tuple[int, int], ...]) -> bytes:
    out = bytearray(code)
    for start, length in ranges:
        out[start:start + length] = bytes(min(length, max(0, len(out) - start)))
    return bytes(out)


def runtime_matches(name: str, code: bytes | str, contracts: PackagedContracts | None = None) -> bool:
    """Whether ``code`` (read from a chain) is the manifest's runtime bytecode of ``name``, immutables masked.

    Args:
        name: ``TaskMarket`` or ``Ratings``.
        code: The deployed code (bytes or 0x-hex).
        contracts: Another manifest (default: the packaged one).
    """
    contracts = contracts or packaged()
    expected_hex = contracts.contract_type(name).runtime_bytecode
    expected = bytes.fromhex(str(expected_hex.bytecode or "0x")[2:]) if expected_hex else b""
    actual = bytes.fromhex(code[2:] if code.startswith("0x") else code) if isinstance(code, str) else bytes(code)
    if not expected or len(actual) != len(expected):
        return False
    ranges = contracts.immutables.get(name, ())
    return _masked(actual, ranges) == _masked(expected, ranges)


def verify_runtime(name: str, address: str, code: bytes | str, contracts: PackagedContracts | None = None) -> None:
    """Check the code deployed at ``address`` against the manifest's runtime bytecode of ``name``.

    Raises:
        BytecodeMismatch: It differs (beyond the immutables), or there is no code.
    """
    if not runtime_matches(name, code, contracts):
        size = len(code) // 2 - 1 if isinstance(code, str) else len(code)
        raise BytecodeMismatch(
            f"the code at {address} ({max(size, 0)} bytes) is not the packaged {name} runtime bytecode "
            "(immutables masked) - a different build or another contract"
        )


def verification_files(folder: Path, chain_id: int, addresses: dict[str, str], constructor_args: dict[str, bytes],
                       contracts: PackagedContracts | None = None) -> dict[str, dict[str, str]]:
    """Write what a block explorer verifies each deployed contract's source with, under ``folder/<chain_id>/``.

    For each contract: ``<Name>.standard-input.json`` (the solc standard-JSON input, byte-exact, to upload as is)
    and ``<Name>.verify.json`` (address, the ``source:Name`` the explorer asks for, the full compiler version,
    the ABI-encoded constructor arguments, and the input file's name).

    Args:
        folder: Base folder (created).
        chain_id: Chain id (a sub-folder each, so deployments on several networks do not overwrite each other).
        addresses: Contract name -> deployed address.
        constructor_args: Contract name -> ABI-encoded constructor arguments (empty for none).
        contracts: Another manifest (default: the packaged one).

    Returns:
        Contract name -> ``{"standard_input": path, "verify": path}`` (strings).
    """
    contracts = contracts or packaged()
    target = Path(folder) / str(int(chain_id))
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, str]] = {}
    for name, address in addresses.items():
        source_id = contracts.contract_type(name).source_id or ""
        standard = target / f"{name}.standard-input.json"
        standard.write_text(json.dumps(contracts.standard_input, indent=1, sort_keys=True) + "\n")
        details = {
            "address": address,
            "contract": f"{source_id}:{name}",
            "compiler_version": contracts.compiler_version,
            "constructor_arguments": "0x" + bytes(constructor_args.get(name, b"")).hex(),
            "standard_input": standard.name,
        }
        verify = target / f"{name}.verify.json"
        verify.write_text(json.dumps(details, indent=1) + "\n")
        written[name] = {"standard_input": str(standard), "verify": str(verify)}
    return written
