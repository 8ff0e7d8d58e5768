"""`make manifest`: compile contracts/ with ape-solidity's settings and write the packaged contract manifest.

Writes ichain/contracts/manifest.json (see ichain/contracts/__init__.py): an EIP-2678 package manifest with the ABI,
creation and runtime bytecode of TaskMarket and Ratings, their sources and compiler settings, plus under
``x-ichain`` the immutable-reference ranges of each runtime code, the full compiler version and the exact
standard-JSON input (what a block explorer verifies the source with). The input is ape-solidity's own
(``get_standard_input_json``: same optimizer runs, evmVersion, remappings, source ids), compiled by the same solc,
so the bytecode equals what `ape compile` builds (tests/unit/test_packaging.py checks it).

Usage: .venv/bin/python tools/build_manifest.py [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "ichain" / "contracts" / "manifest.json"
CONTRACTS = {"TaskMarket": "contracts/TaskMarket.sol", "Ratings": "contracts/Ratings.sol"}
SELECTION = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object",
             "evm.deployedBytecode.immutableReferences", "metadata"]


def build() -> dict:
    """Compile and return the manifest as JSON data."""
    import solcx
    from ape import compilers, project
    from ethpm_types import ContractType, PackageManifest
    from ethpm_types.source import Compiler, Source

    solidity = compilers.registered_compilers[".sol"]
    inputs = solidity.get_standard_input_json([ROOT / p for p in CONTRACTS.values()], project=project)
    if len(inputs) != 1:
        sys.exit(f"build_manifest: expected one solc version for {', '.join(CONTRACTS)}, got {len(inputs)}")
    version, standard_input = next(iter(inputs.items()))
    # The explorer gets the input as ape-solidity made it; the compile here asks for more output (the immutable
    # references and metadata), which changes no bytecode.
    compile_input = json.loads(json.dumps(standard_input))
    compile_input["settings"]["outputSelection"] = {source: {"*": SELECTION} for source in standard_input["sources"]}
    binary = solcx.install.get_executable(version=version)
    output = solcx.compile_standard(compile_input, solc_binary=binary, base_path=str(ROOT))
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        sys.exit("build_manifest: " + errors[0].get("formattedMessage", str(errors[0])))

    contract_types, immutables = {}, {}
    full_version = ""
    for name, source_id in CONTRACTS.items():
        out = output["contracts"][source_id][name]
        evm = out["evm"]
        contract_types[name] = ContractType.model_validate({
            "contractName": name, "sourceId": source_id, "abi": out["abi"],
            "deploymentBytecode": {"bytecode": "0x" + evm["bytecode"]["object"]},
            "runtimeBytecode": {"bytecode": "0x" + evm["deployedBytecode"]["object"]},
        })
        refs = evm["deployedBytecode"].get("immutableReferences") or {}
        immutables[name] = sorted([r["start"], r["length"]] for ranges in refs.values() for r in ranges)
        full_version = "v" + json.loads(out["metadata"])["compiler"]["version"]

    manifest = PackageManifest(
        name="ichain", version="2", contractTypes=contract_types,
        sources={sid: Source(content=src["content"]) for sid, src in standard_input["sources"].items()},
        compilers=[Compiler(name="solidity", version=str(version), settings=standard_input["settings"],
                            contractTypes=list(CONTRACTS))],
    )
    data = manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["x-ichain"] = {"compilerVersion": full_version, "immutableReferences": immutables,
                        "standardInput": standard_input}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    data = build()
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output} "
          f"({', '.join(data['contractTypes'])}, solc {data['x-ichain']['compilerVersion']})")


if __name__ == "__main__":
    main()
