#!/usr/bin/env python3
"""Mutation testing of the contracts (``make mutation``): how many injected bugs the forge suite catches.

The mutants are slither-mutate's own: its operator classes (``slither.tools.mutator.mutators``, shipped with
slither in .venv-audit) generate every patch of contracts/TaskMarket.sol and contracts/Ratings.sol. The runner is
ours, for three reasons measured on this 2-core machine: slither-mutate compiles each mutant twice (crytic-compile,
then the test command), runs one mutant at a time, and patches the working tree in place (an interrupted run or a
concurrent build would see a mutant). Here each worker has its own scratch copy of the contracts, tests/forge and
foundry.toml, builds the mutant once with ``forge build`` (a build failure is an uncompilable mutant, not counted),
then runs ``forge test --fail-fast``: any failing test kills the mutant, a pass lets it survive. The order follows
slither-mutate: revert (RR) and comment (CR) mutants first; a line where one of those survives is left out of the
finer operators (its statement is already shown unchecked), as slither-mutate does without --comprehensive.

Operators: RR (statement -> revert), CR (statement deleted), ROR/LOR/AOR/ASOR/BOR/UOR (operator swaps), MIA
(condition forced true / false), LIR (integer constants), MVIE/MVIV (initialisation dropped / changed), MWA (loop
condition negated), SBR (msg.value / block.timestamp -> 0, msg.sender -> tx.origin, storage <-> memory, ...).
FHR is left out: it rewrites function headers by substring (``view`` -> ``pure`` also inside identifiers such as
``reviewWindow``, ``external`` -> ``public``), whose compiling mutants are equivalent by construction.

The forge run is the fast profile: optimizer off (the build is ~3x faster with solc-js; no forge test depends on
optimised gas), fewer fuzz and invariant runs (ICHAIN_MUTATION_FUZZ_RUNS, _INVARIANT_RUNS, _INVARIANT_DEPTH). A
mutant that makes the suite run past --timeout seconds counts as killed (a hang is caught).

Writes bench/results/mutation.json: per contract {"generated", "killed", "survived", "uncompilable",
"duplicates", "skipped", "kill_pct", "survivors": [{"file", "line", "mutator", "original", "mutant", "why"}]}.
Each survivor's "why" comes from tools/mutation_survivors.json (keyed "<file>|<mutator>|<original>|<mutant>",
whitespace collapsed), so an explanation follows the mutant when lines move; an unexplained one says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import inspect
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONTRACTS = ("contracts/TaskMarket.sol", "contracts/Ratings.sol")
# RR and CR first (see the module docstring), then the finer operators.
COARSE = ("RR", "CR")
FINE = ("ROR", "LOR", "AOR", "ASOR", "BOR", "UOR", "MIA", "LIR", "MVIE", "MVIV", "MWA", "SBR")
SURVIVOR_NOTES = ROOT / "tools" / "mutation_survivors.json"
# What a worker copies: the contracts, the forge tests and forge's settings (nothing else is compiled).
COPIED = ("contracts", "tests/forge", "foundry.toml")


@dataclass
class Mutant:
    """One patch of one contract file."""

    file: str  # repository-relative path of the mutated file
    mutator: str
    line: int
    start: int  # byte offsets of the replaced span
    end: int
    original: str
    mutant: str
    outcome: str = ""  # killed | survived | uncompilable | timeout (counted as killed)
    seconds: float = 0.0

    def key(self) -> str:
        """The survivor-notes key: stable when lines move, whitespace collapsed."""
        return "|".join((self.file, self.mutator, " ".join(self.original.split()), " ".join(self.mutant.split())))


@dataclass
class ContractReport:
    """The figures of one contract."""

    file: str
    generated: int = 0  # mutants that compiled and were tested
    killed: int = 0
    survived: int = 0
    uncompilable: int = 0
    duplicates: int = 0  # patches that produced a source already tested
    skipped: int = 0  # finer mutants on a line where an RR/CR mutant survived
    sampled_out: int = 0  # left out by --sample
    kill_pct: float = 0.0
    survivors: list[dict[str, Any]] = field(default_factory=list)


def fast_env(args: argparse.Namespace) -> dict[str, str]:
    """forge's environment for the fast profile."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update({
        "FOUNDRY_OPTIMIZER": "false",
        "FOUNDRY_FUZZ_RUNS": str(args.fuzz_runs),
        "FOUNDRY_INVARIANT_RUNS": str(args.invariant_runs),
        "FOUNDRY_INVARIANT_DEPTH": str(args.invariant_depth),
        "FOUNDRY_INVARIANT_SHRINK_RUN_LIMIT": "0",  # a failure is enough; its smallest form is not needed
    })
    return env


def make_workspace(parent: Path, name: str, forge_tests: list[str]) -> Path:
    """A scratch copy of what forge compiles, with the repository's toolchain linked in.

    ``forge_tests``: the files of tests/forge to copy (empty: all of them); forge compiles every file there.
    """
    ws = parent / name
    for rel in COPIED:
        src, dst = ROOT / rel, ws / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and rel == "tests/forge" and forge_tests:
            dst.mkdir(parents=True, exist_ok=True)
            for f in forge_tests:
                shutil.copy2(src / f, dst / f)
        elif src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    (ws / ".tools").symlink_to((ROOT / ".tools").resolve())
    return ws


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run a command; (exit code or None on timeout, combined output tail)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, (p.stdout + p.stderr)[-4000:]


def forge_test_cmd(args: argparse.Namespace) -> list[str]:
    cmd = ["forge", "test", "--fail-fast"]
    if args.match_path:
        cmd += ["--match-path", args.match_path]
    return cmd


def generate(ws: Path, files: list[str], operators: tuple[str, ...]) -> Iterator[Mutant]:
    """Every patch slither-mutate's operators make of each file's main contract.

    Slither compiles the scratch copy ``ws`` through forge (crytic-compile's foundry platform): the toolchain's
    solc is solc-js behind a wrapper that only speaks --standard-json, which crytic-compile's plain solc platform
    (and so stock slither-mutate's per-mutant compile) cannot drive.
    """
    from slither import Slither  # only in .venv-audit
    from slither.tools.mutator.mutators import all_mutators
    from slither.tools.mutator.mutators.abstract_mutator import AbstractMutator

    classes = {c.NAME: c for c in (getattr(all_mutators, n) for n in dir(all_mutators))
               if inspect.isclass(c) and issubclass(c, AbstractMutator) and c is not AbstractMutator}
    missing = [op for op in operators if op not in classes]
    if missing:
        raise SystemExit(f"mutation: unknown operators {missing} (slither has {sorted(classes)})")
    # (crytic-compile resolves source paths against the working directory; the optimizer changes no source map
    # that the operators use, and costs minutes with solc-js)
    os.environ["FOUNDRY_OPTIMIZER"] = "false"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.chdir(ws):
        sl = Slither(".", compile_force_framework="foundry", foundry_out_directory=".build/forge/out")
    for rel in files:
        path = (ws / rel).resolve()
        stem = path.stem
        found = [(cu, c) for cu in sl.compilation_units for c in cu.contracts
                 if c.name == stem and not c.is_interface
                 and Path(c.source_mapping.filename.absolute).resolve() == path]
        if not found:
            raise SystemExit(f"mutation: no contract {stem} in {rel}")
        unit, target = found[0]
        for op in operators:
            m = classes[op](unit, 60, "true", None, target, None, False, Path(tempfile.gettempdir()), [])
            patches = m._mutate().get("patches", {})  # generation only: we run the patches ourselves
            for patched_file, items in patches.items():
                if Path(patched_file).resolve() != path:
                    continue
                for p in sorted(items, key=lambda x: x["start"]):
                    yield Mutant(rel, op, int(p["line_number"]), int(p["start"]), int(p["end"]),
                                 p["old_string"], p["new_string"])


# A persistent solc-js process that type-checks each mutant of one file (analysis only: no code generation), so
# the many patches that do not compile (a declaration turned into revert(), a half-commented statement) cost
# a fraction of a second each instead of a forge build. Input and output are JSON lines.
_CHECKER_JS = r"""
'use strict';
const fs = require('fs'), path = require('path'), readline = require('readline');
const solc = require(process.argv[2]);
const root = process.argv[3];
function findImports(p) {
  const c = path.resolve(root, p);
  return fs.existsSync(c) ? { contents: fs.readFileSync(c, 'utf8') } : { error: 'File not found: ' + p };
}
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const req = JSON.parse(line);
  const input = { language: 'Solidity', sources: { [req.file]: { content: req.source } },
                  settings: { outputSelection: { '*': { '': ['ast'] } } } };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  process.stdout.write(JSON.stringify({ id: req.id, ok: errors.length === 0,
                                        error: errors.length ? errors[0].message : '' }) + '\n');
});
"""


def compilable(ws: Path, mutants: list[Mutant], source: bytes) -> list[bool]:
    """Whether each mutant of one file passes solc's analysis (one solc-js process for all of them)."""
    if not mutants:
        return []
    module = (ROOT / ".tools" / "node_modules" / "solc").resolve()
    if not module.exists() or shutil.which("node") is None:
        return [True] * len(mutants)  # no solc-js here: forge build judges every mutant
    script = ws / "check-mutant.js"
    script.write_text(_CHECKER_JS)
    lines = "".join(json.dumps({"id": i, "file": m.file, "source": apply(source, m).decode("utf8", "replace")})
                    + "\n" for i, m in enumerate(mutants))
    p = subprocess.run(["node", str(script), str(module), str(ws)], input=lines, capture_output=True, text=True,
                       check=False)
    answers = {a["id"]: a["ok"] for a in map(json.loads, p.stdout.splitlines())}
    if len(answers) != len(mutants):
        print(f"mutation: the solc-js pre-check failed ({p.stderr[-300:]}); forge build judges every mutant")
        return [True] * len(mutants)
    return [answers[i] for i in range(len(mutants))]


def apply(source: bytes, m: Mutant) -> bytes:
    """The mutated source (offsets are solc's byte offsets)."""
    return source[: m.start] + m.mutant.encode() + source[m.end:]


class Pool:
    """Workers, each with its own scratch copy; a mutant is built and tested in one of them."""

    def __init__(self, workspaces: list[Path], args: argparse.Namespace) -> None:
        self.free: list[Path] = list(workspaces)
        self.lock = threading.Lock()
        self.args = args
        self.env = fast_env(args)
        self.done = 0
        self.total = 0

    def test(self, m: Mutant, source: bytes) -> Mutant:
        with self.lock:
            ws = self.free.pop()
        target = ws / m.file
        t0 = time.monotonic()
        try:
            target.write_bytes(apply(source, m))
            rc, out = run(["forge", "build"], ws, self.env, self.args.timeout)
            if rc is None:
                m.outcome = "timeout"
            elif rc != 0:
                m.outcome = "uncompilable"
            else:
                rc, out = run(forge_test_cmd(self.args), ws, self.env, self.args.timeout)
                m.outcome = "survived" if rc == 0 else ("timeout" if rc is None else "killed")
        finally:
            target.write_bytes(source)
            m.seconds = round(time.monotonic() - t0, 2)
            with self.lock:
                self.free.append(ws)
                self.done += 1
                if self.args.verbose or m.outcome == "survived":
                    print(f"mutation: [{self.done}/{self.total}] {m.file}:{m.line} {m.mutator} {m.outcome} "
                          f"({m.seconds} s): {' '.join(m.original.split())[:70]!r} -> "
                          f"{' '.join(m.mutant.split())[:70]!r}", flush=True)
        return m

    def run_all(self, mutants: list[tuple[Mutant, bytes]]) -> list[Mutant]:
        self.total += len(mutants)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.free)) as ex:
            futures = [ex.submit(self.test, m, src) for m, src in mutants]
            return [f.result() for f in futures]


def main(argv: list[str] | None = None) -> int:
    global ROOT  # --root measures another checkout (the module's helpers read ROOT)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contracts", nargs="+", default=list(DEFAULT_CONTRACTS))
    ap.add_argument("--operators", default=",".join(COARSE + FINE),
                    help="comma-separated slither-mutate operators (default: all but FHR)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (one scratch copy each)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for one build or test run of a mutant")
    ap.add_argument("--fuzz-runs", type=int, default=int(os.environ.get("ICHAIN_MUTATION_FUZZ_RUNS", 64)))
    ap.add_argument("--invariant-runs", type=int, default=int(os.environ.get("ICHAIN_MUTATION_INVARIANT_RUNS", 16)))
    ap.add_argument("--invariant-depth", type=int,
                    default=int(os.environ.get("ICHAIN_MUTATION_INVARIANT_DEPTH", 100)))
    ap.add_argument("--match-path", default="", help="forge --match-path (default: the whole forge suite)")
    ap.add_argument("--forge-tests", nargs="*", default=[],
                    help="only these files of tests/forge are copied and compiled (default: all)")
    ap.add_argument("--limit", type=int, default=0, help="test only the first N mutants per file (a quick look)")
    ap.add_argument("--sample", type=int, default=1,
                    help="test one mutant in N, chosen by a hash of the mutant (deterministic; 1: all)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutation.json"))
    ap.add_argument("--verbose", action="store_true", help="print every mutant, not only survivors")
    ap.add_argument("--root", default=str(ROOT), help="repository to measure (default: this one)")
    ap.add_argument("--annotate", action="store_true",
                    help="run nothing: fill in the survivors' 'why' of --out from tools/mutation_survivors.json")
    args = ap.parse_args(argv)
    if args.annotate:
        return annotate(Path(args.out))
    ROOT = Path(args.root).resolve()
    os.environ["PATH"] = f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"  # forge, solc
    logging.getLogger("Slither-Mutate").setLevel(logging.WARNING)
    operators = tuple(op.strip() for op in args.operators.split(",") if op.strip())
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="ichain-mutation-") as tmp:
        workspaces = [make_workspace(Path(tmp), f"w{i}", args.forge_tests) for i in range(max(1, args.jobs))]
        env = fast_env(args)
        # Baseline: the unmutated suite must pass in every copy (and each copy's build cache is warmed).
        for ws in workspaces:
            rc, out = run(["forge", "build"], ws, env, args.timeout)
            if rc == 0:
                rc, out = run(forge_test_cmd(args), ws, env, args.timeout)
            if rc != 0:
                print(f"mutation: the unmutated forge suite does not pass; nothing to measure\n{out}", file=sys.stderr)
                return 1
        baseline = time.monotonic() - started
        print(f"mutation: baseline passes ({baseline:.1f} s for {len(workspaces)} copies); generating mutants",
              flush=True)

        gen_ws = make_workspace(Path(tmp), "gen", args.forge_tests)
        pool = Pool(workspaces, args)
        reports: dict[str, ContractReport] = {}
        tested: list[Mutant] = []
        for rel in args.contracts:
            source = (ROOT / rel).read_bytes()
            rep = reports[rel] = ContractReport(rel)
            seen = {hashlib.sha256(source).hexdigest()}
            by_phase: dict[str, list[Mutant]] = {"coarse": [], "fine": []}
            for m in generate(gen_ws, [rel], operators):
                digest = hashlib.sha256(apply(source, m)).hexdigest()
                if digest in seen:
                    rep.duplicates += 1
                    continue
                seen.add(digest)
                if args.sample > 1 and int(digest[:8], 16) % args.sample:
                    rep.sampled_out += 1
                    continue
                by_phase["coarse" if m.mutator in COARSE else "fine"].append(m)
            for phase, batch in by_phase.items():
                ok = compilable(gen_ws, batch, source)
                by_phase[phase] = [m for m, good in zip(batch, ok) if good]
                for m, good in zip(batch, ok):
                    if not good:
                        m.outcome = "uncompilable"
                        rep.uncompilable += 1
            print(f"mutation: {rel}: {rep.uncompilable} mutants do not compile (solc-js analysis)", flush=True)
            weak_lines: set[int] = set()
            for phase in ("coarse", "fine"):
                batch = by_phase[phase]
                if phase == "fine":
                    kept = [m for m in batch if m.line not in weak_lines]
                    rep.skipped += len(batch) - len(kept)
                    batch = kept
                if args.limit:
                    batch = batch[: args.limit]
                print(f"mutation: {rel}: {len(batch)} {phase} mutants", flush=True)
                for m in pool.run_all([(m, source) for m in batch]):
                    tested.append(m)
                    if m.outcome == "uncompilable":
                        rep.uncompilable += 1
                        continue
                    rep.generated += 1
                    if m.outcome == "survived":
                        rep.survived += 1
                        if phase == "coarse":
                            weak_lines.add(m.line)
                    else:
                        rep.killed += 1

    notes: dict[str, str] = json.loads(SURVIVOR_NOTES.read_text()) if SURVIVOR_NOTES.exists() else {}
    for rep in reports.values():
        rep.kill_pct = round(100.0 * rep.killed / rep.generated, 2) if rep.generated else 100.0
        for m in tested:
            if m.file == rep.file and m.outcome == "survived":
                rep.survivors.append({"file": m.file, "line": m.line, "mutator": m.mutator,
                                      "original": " ".join(m.original.split()), "mutant": " ".join(m.mutant.split()),
                                      "why": notes.get(m.key(), "unexplained")})
    total_gen = sum(r.generated for r in reports.values())
    total_killed = sum(r.killed for r in reports.values())
    result = {
        "tool": "slither-mutate operators (slither " + _slither_version() + "), parallel forge runner "
                "(tools/mutation.py)",
        "operators": list(operators),
        "test_command": " ".join(forge_test_cmd(args)),
        "forge_tests": args.forge_tests or sorted(p.name for p in (ROOT / "tests" / "forge").glob("*.sol")),
        "profile": {"optimizer": False, "fuzz_runs": args.fuzz_runs, "invariant_runs": args.invariant_runs,
                    "invariant_depth": args.invariant_depth},
        "limit_per_file": args.limit or None,
        "sample_one_in": args.sample,
        "seconds": round(time.monotonic() - started, 1),
        "contracts": {Path(r.file).stem: {k: v for k, v in asdict(r).items() if k != "file"} | {"file": r.file}
                      for r in reports.values()},
        "total": {"generated": total_gen, "killed": total_killed, "survived": total_gen - total_killed,
                  "kill_pct": round(100.0 * total_killed / total_gen, 2) if total_gen else 100.0},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    annotate(out)  # the survivors' explanations and the score without equivalent mutants
    result = json.loads(out.read_text())
    for name, c in result["contracts"].items():
        print(f"mutation: {name}: {c['generated']} mutants, {c['killed']} killed, {c['survived']} survived "
              f"({c['kill_pct']}%; {c['uncompilable']} uncompilable, {c['duplicates']} duplicates, "
              f"{c['skipped']} skipped on weak lines; {c['equivalent']} equivalent survivors, "
              f"{c['kill_pct_non_equivalent']}% of the others killed)")
    print(f"mutation: total {result['total']['kill_pct']}% killed in {result['seconds']} s -> {out}")
    return 0


def annotate(out: Path) -> int:
    """Re-read a written report and attach each survivor's explanation (the notes may be written after a run)."""
    notes: dict[str, str] = json.loads(SURVIVOR_NOTES.read_text()) if SURVIVOR_NOTES.exists() else {}
    result = json.loads(out.read_text())
    unexplained = 0
    for c in result["contracts"].values():
        for sv in c["survivors"]:
            key = "|".join((sv["file"], sv["mutator"], sv["original"], sv["mutant"]))
            sv["why"] = notes.get(key, "unexplained")
            unexplained += sv["why"] == "unexplained"
        # an equivalent mutant behaves as the original: no test can kill it, so the score leaves it out
        c["equivalent"] = sum(sv["why"].startswith("equivalent") for sv in c["survivors"])
        live = c["generated"] - c["equivalent"]
        c["kill_pct_non_equivalent"] = round(100.0 * c["killed"] / live, 2) if live else 100.0
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"mutation: {out}: {unexplained} survivor(s) without an explanation")
    return 0


def _slither_version() -> str:
    try:
        from importlib.metadata import version

        return version("slither-analyzer")
    except Exception:  # noqa: BLE001 - the version is only a label
        return "?"


if __name__ == "__main__":
    sys.exit(main())
