#!/usr/bin/env bash
# make audit: the contracts' audit gates, run by `make test` after the Ape suite.
#
#   1. slither: zero High/Medium findings on contracts/ (attack contracts and forge tests filtered out);
#      every excluded detector must carry a reason in slither.config.json ("excluded_detectors_reasons").
#   2. forge invariant campaign (tests/forge/*.invariant.t.sol): >= ICHAIN_MIN_CALLS handler calls in total.
#   3. forge coverage: branch coverage >= ICHAIN_MIN_BRANCH_COVERAGE % for each audited contract.
#
# Each gate that fails prints one line `audit: <gate>: <shortfall>`; the script exits non-zero at the end
# if any gate failed. Logs and reports go to .build/forge/audit/. A summary is printed and written as JSON.
#
# Knobs (environment): ICHAIN_INVARIANT_RUNS (256), ICHAIN_INVARIANT_DEPTH (500), ICHAIN_MIN_CALLS (100000),
# ICHAIN_MIN_BRANCH_COVERAGE (95), ICHAIN_COVERAGE_RUNS / _DEPTH (64 / 200: coverage replays the campaign
# un-optimised, so it uses a smaller one), ICHAIN_AUDIT_STEPS ("slither campaign coverage").
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PATH="$ROOT/.tools/bin:$PATH"
OUT="$ROOT/.build/forge/audit"
SLITHER="$ROOT/.venv-audit/bin/slither"
PY="$(command -v python3)"
CONTRACTS=(contracts/TaskMarket.sol contracts/Ratings.sol)
RUNS="${ICHAIN_INVARIANT_RUNS:-256}"
DEPTH="${ICHAIN_INVARIANT_DEPTH:-500}"
MIN_CALLS="${ICHAIN_MIN_CALLS:-100000}"
MIN_BRANCH="${ICHAIN_MIN_BRANCH_COVERAGE:-95}"
COV_RUNS="${ICHAIN_COVERAGE_RUNS:-64}"
COV_DEPTH="${ICHAIN_COVERAGE_DEPTH:-200}"
STEPS="${ICHAIN_AUDIT_STEPS:-slither campaign coverage}"
FAILED=0

say() { printf 'audit: %s\n' "$*"; }
gate_fail() { printf 'audit: %s: %s\n' "$1" "$2" >&2; FAILED=1; }
now() { date +%s.%N; }
elapsed() { "$PY" -c "print(f'{$2 - $1:.1f}')"; }

mkdir -p "$OUT"
for c in "${CONTRACTS[@]}"; do
  [ -f "$c" ] || { printf 'audit: setup: %s is missing — nothing to audit\n' "$c" >&2; exit 1; }
done
command -v forge >/dev/null || { printf 'audit: setup: forge not found — run make setup\n' >&2; exit 1; }
SUMMARY="$OUT/summary.json"
echo '{}' > "$SUMMARY"
record() {  # record KEY JSON-VALUE: merge one figure into the summary
  "$PY" - "$SUMMARY" "$1" "$2" <<'EOF'
import json, os, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = json.load(open(path))
data[key] = value
with open(path + ".part", "w") as f:
    json.dump(data, f, indent=2)
os.replace(path + ".part", path)
EOF
}

run_slither() {
  [ -x "$SLITHER" ] || { gate_fail slither "slither not installed in .venv-audit — run: tools/setup.sh audit"; return; }
  local t0; t0="$(now)"
  # crytic-compile drives forge (foundry.toml), so slither sees exactly what forge compiles.
  rm -f "$OUT/slither.json"
  "$SLITHER" . --config-file slither.config.json --compile-force-framework foundry \
    --foundry-out-directory .build/forge/out --json "$OUT/slither.json" >"$OUT/slither.log" 2>&1
  if [ ! -s "$OUT/slither.json" ]; then
    gate_fail slither "slither produced no report (see .build/forge/audit/slither.log)"; return
  fi
  local line
  line="$("$PY" - "$OUT/slither.json" slither.config.json <<'EOF'
import json, sys
report, config = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
if not report.get("success"):
    print("ERROR " + " ".join(str(report.get("error")).split())[:300]); sys.exit()
excluded = [d for d in (config.get("detectors_to_exclude") or "").split(",") if d]
reasons = config.get("excluded_detectors_reasons", {})
unexplained = [d for d in excluded if not str(reasons.get(d, "")).strip()]
if unexplained:
    print("ERROR excluded detectors without a reason in slither.config.json: " + ", ".join(unexplained)); sys.exit()
counts = {"High": 0, "Medium": 0, "Low": 0, "Informational": 0, "Optimization": 0}
blocking = []
for r in report.get("results", {}).get("detectors", []):
    counts[r["impact"]] = counts.get(r["impact"], 0) + 1
    if r["impact"] in ("High", "Medium"):
        blocking.append(f'{r["check"]} ({r["first_markdown_element"]})')
print(json.dumps({"counts": counts, "blocking": blocking, "excluded": excluded}))
EOF
)"
  case "$line" in
    ERROR*) gate_fail slither "${line#ERROR }"; return ;;
  esac
  record slither "$line"
  "$PY" - "$line" "$(elapsed "$t0" "$(now)")" <<'EOF'
import json, sys
d = json.loads(sys.argv[1]); c = d["counts"]
print(f'audit: slither: High {c["High"]}, Medium {c["Medium"]}, Low {c["Low"]}, Informational {c["Informational"]}, '
      f'Optimization {c["Optimization"]}; excluded detectors: {", ".join(d["excluded"]) or "none"} ({sys.argv[2]} s)')
EOF
  local blocking
  blocking="$("$PY" -c 'import json,sys; print("; ".join(json.loads(sys.argv[1])["blocking"]))' "$line")"
  [ -z "$blocking" ] || gate_fail slither "High/Medium findings: $blocking"
}

run_campaign() {
  local t0 t1; t0="$(now)"
  FOUNDRY_INVARIANT_RUNS="$RUNS" FOUNDRY_INVARIANT_DEPTH="$DEPTH" \
    forge test --match-path 'tests/forge/*.invariant.t.sol' --json >"$OUT/campaign.json" 2>"$OUT/campaign.log"
  local rc=$?
  t1="$(now)"
  local line
  line="$("$PY" - "$OUT/campaign.json" "$(elapsed "$t0" "$t1")" <<'EOF'
import json, sys
try:
    suites = json.load(open(sys.argv[1]))
except ValueError:
    print("ERROR forge produced no results (see .build/forge/audit/campaign.log)"); sys.exit()
calls = reverts = tests = 0
failures = []
for suite, body in suites.items():
    for name, res in body["test_results"].items():
        tests += 1
        inv = (res.get("kind") or {}).get("Invariant")
        if inv:
            calls += inv["calls"]; reverts += inv["reverts"]
        if res["status"] != "Success":
            failures.append(f'{suite.split(":")[-1]}.{name}: {" ".join(str(res.get("reason")).split())[:200]}')
print(json.dumps({"tests": tests, "calls": calls, "reverts": reverts, "seconds": float(sys.argv[2]),
                  "failures": failures}))
EOF
)"
  case "$line" in
    ERROR*) gate_fail campaign "${line#ERROR }"; return ;;
  esac
  record campaign "$line"
  "$PY" - "$line" "$RUNS" "$DEPTH" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
print(f'audit: campaign: {d["tests"]} invariant tests, {d["calls"]:,} calls ({sys.argv[2]} runs x {sys.argv[3]} depth each), '
      f'{d["reverts"]} reverts, {len(d["failures"])} failed, {d["seconds"]} s')
for f in d["failures"]:
    print(f"audit: campaign: FAILED {f}")
EOF
  local calls failures
  calls="$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["calls"])' "$line")"
  failures="$("$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1])["failures"]))' "$line")"
  [ "$failures" = 0 ] && [ "$rc" = 0 ] || gate_fail campaign "$failures invariant test(s) failed (see .build/forge/audit/campaign.json)"
  [ "$calls" -ge "$MIN_CALLS" ] || gate_fail campaign "only $calls calls, below the $MIN_CALLS required"
}

run_coverage() {
  local t0; t0="$(now)"
  rm -f "$OUT/lcov.info"
  FOUNDRY_INVARIANT_RUNS="$COV_RUNS" FOUNDRY_INVARIANT_DEPTH="$COV_DEPTH" \
    forge coverage --report summary --report lcov --report-file "$OUT/lcov.info" >"$OUT/coverage.log" 2>&1
  local rc=$?
  if [ ! -s "$OUT/lcov.info" ]; then
    gate_fail coverage "forge coverage wrote no report (exit $rc, see .build/forge/audit/coverage.log)"; return
  fi
  [ "$rc" = 0 ] || gate_fail coverage "a test failed under forge coverage (see .build/forge/audit/coverage.log)"
  local line
  line="$("$PY" - "$OUT/lcov.info" "$MIN_BRANCH" "$(elapsed "$t0" "$(now)")" "${CONTRACTS[@]}" <<'EOF'
import json, sys
lcov, minimum, seconds, wanted = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
per, cur = {}, None
for raw in open(lcov):
    key, _, val = raw.strip().partition(":")
    if key == "SF":
        cur = per.setdefault(val, {"BRF": 0, "BRH": 0, "LF": 0, "LH": 0, "FNF": 0, "FNH": 0, "missed": []})
    elif cur is not None and key in ("BRF", "BRH", "LF", "LH", "FNF", "FNH"):
        cur[key] += int(val)
    elif cur is not None and key == "BRDA":
        line_no, _block, _branch, taken = val.split(",")
        if taken in ("-", "0"):
            cur["missed"].append(int(line_no))
out, short = {"seconds": seconds}, []
for c in wanted:
    s = per.get(c)
    if s is None:
        short.append(f"{c}: not in the report"); continue
    branch = 100.0 * s["BRH"] / s["BRF"] if s["BRF"] else 100.0
    out[c] = {"branches": f'{s["BRH"]}/{s["BRF"]}', "branch_pct": round(branch, 2),
              "lines_pct": round(100.0 * s["LH"] / s["LF"], 2) if s["LF"] else 100.0,
              "missed_branch_lines": sorted(set(s["missed"]))}
    if branch < minimum:
        missed = ",".join(map(str, sorted(set(s["missed"]))))
        short.append(f'{c} {branch:.2f}% < {minimum:g}% ({s["BRH"]}/{s["BRF"]} branches'
                     + (f'; missed at lines {missed})' if missed else ')'))
out["shortfalls"] = short
print(json.dumps(out))
EOF
)"
  record coverage "$line"
  "$PY" - "$line" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
parts = [f'{k} {v["branch_pct"]}% ({v["branches"]})' for k, v in d.items() if isinstance(v, dict)]
print(f'audit: coverage: branches: {", ".join(parts)} ({d["seconds"]} s)')
EOF
  local short
  short="$("$PY" -c 'import json,sys; print("; ".join(json.loads(sys.argv[1])["shortfalls"]))' "$line")"
  [ -z "$short" ] || gate_fail coverage "branch coverage below the gate: $short"
}

for step in $STEPS; do
  case "$step" in
    slither) run_slither ;;
    campaign) run_campaign ;;
    coverage) run_coverage ;;
    *) printf 'audit: setup: unknown step %s (known: slither campaign coverage)\n' "$step" >&2; exit 2 ;;
  esac
done

if [ "$FAILED" = 0 ]; then say "all gates passed (summary: .build/forge/audit/summary.json)"; else exit 1; fi
