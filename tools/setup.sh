#!/usr/bin/env bash
# make setup: installs everything iChain needs on a fresh Debian/Ubuntu machine, idempotently.
#
# Each step checks first and does nothing when already done (a second run is quiet and fast).
# A failing step prints one line `setup: <step>: <what is wrong> — <what to do>` and exits non-zero.
#
# Steps can be run alone for diagnosis: tools/setup.sh venv tools solc audit docker tor chromium image
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="${ICHAIN_TOOLS_DIR:-$ROOT/.tools}"
SOLC_VERSION="$(sed -n 's/^ *version: *\([0-9.]*\).*/\1/p' "$ROOT/ape-config.yaml" | head -n1)"
SOLCX_DIR="${SOLCX_BINARY_PATH:-$HOME/.solcx}"
APT_UPDATED=0

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: %s: %s\n' "$1" "$2" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
stamp_ok() { [ -f "$TOOLS/stamps/$1" ] && [ "$(cat "$TOOLS/stamps/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$TOOLS/stamps"; printf '%s' "$2" > "$TOOLS/stamps/$1"; }
hash_files() { cat "$@" | sha256sum | cut -c1-16; }

need_root() {  # need_root WHAT: fail early, on the terminal, when neither root nor sudo is available
  [ "$(id -u)" = 0 ] && return 0
  have sudo && sudo -n true 2>/dev/null && return 0
  fail "$STEP" "needs root to $1 — run make as root or give this user passwordless sudo"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

dpkg_installed() {  # ICHAIN_DPKG_ADMINDIR lets the tests pretend a package is missing
  dpkg-query ${ICHAIN_DPKG_ADMINDIR:+--admindir="$ICHAIN_DPKG_ADMINDIR"} -W -f='${Status}' "$1" 2>/dev/null \
    | grep -q "ok installed"
}

apt_install() {  # apt_install PACKAGE... (installs only what is missing)
  local missing=()
  for p in "$@"; do dpkg_installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  have apt-get || fail "$STEP" "apt-get not found — install ${missing[*]} with your system's package manager"
  need_root "install ${missing[*]} with apt-get"
  say "$STEP: installing ${missing[*]} (apt)"
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -qq >"$TOOLS/apt.log" 2>&1 || fail "$STEP" "apt-get update failed (see .tools/apt.log) — check the machine's apt sources"
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$TOOLS/apt.log" 2>&1 || fail "$STEP" "apt-get install ${missing[*]} failed (see .tools/apt.log)"
}

step_python() {
  STEP=python
  have python3 || fail python "python3 not found — install Python 3.10+ (apt-get install python3 python3-venv)"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || fail python "Python 3.10+ is needed, found $(python3 -V 2>&1) — install a newer python3"
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
}

step_venv() {
  STEP=venv
  local want; want="$(hash_files "$ROOT/requirements.lock" "$ROOT/pyproject.toml")"
  if [ -x "$VENV/bin/python" ] && stamp_ok venv "$want"; then return 0; fi
  say "venv: installing pinned Python packages into .venv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || fail venv "python3 -m venv failed — install python3-venv"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >"$TOOLS/pip.log" 2>&1
  # The distribution was called `ichain` before it became the Ape plugin `ape-ichain`: an old editable install
  # would register the same commands twice.
  "$VENV/bin/pip" uninstall -y -q --disable-pip-version-check ichain >>"$TOOLS/pip.log" 2>&1 || true
  "$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/requirements.lock" -e "$ROOT[test]" \
    >>"$TOOLS/pip.log" 2>&1 || fail venv "pip install failed (see .tools/pip.log) — check access to the Python package index"
  stamp_set venv "$want"
}

step_tools() {  # anvil, forge, cast (binaries inside npm packages) and solc-js
  STEP=tools
  local want; want="$(hash_files "$ROOT/tools/package.json")"
  if ! { stamp_ok tools "$want" && [ -x "$TOOLS/bin/anvil" ]; }; then
    have npm || fail tools "npm not found — install Node.js and npm (apt-get install nodejs npm)"
    say "tools: installing anvil, forge, cast and solc-js from npm into .tools"
    cp "$ROOT/tools/package.json" "$TOOLS/package.json"
    (cd "$TOOLS" && npm install --no-audit --no-fund --silent >"$TOOLS/npm.log" 2>&1) \
      || fail tools "npm install failed (see .tools/npm.log) — check access to the npm registry"
    stamp_set tools "$want"
  fi
  mkdir -p "$TOOLS/bin"
  for t in anvil forge cast; do
    ln -sfn "$TOOLS/node_modules/@foundry-rs/$t-linux-amd64/bin/$t" "$TOOLS/bin/$t"
    # ape-foundry looks for anvil on PATH: the venv's bin is on PATH once activated.
    [ -d "$VENV/bin" ] && ln -sfn "$TOOLS/bin/$t" "$VENV/bin/$t"
  done
  "$TOOLS/bin/anvil" --version >/dev/null 2>&1 || fail tools "anvil does not run on this machine (linux-amd64 build)"
}

step_solc() {  # the pinned compiler where py-solc-x (ape-solidity) looks for it
  STEP=solc
  local target="$SOLCX_DIR/solc-v$SOLC_VERSION"
  if [ -x "$target" ] && "$target" --version 2>/dev/null | grep -q "Version: $SOLC_VERSION"; then
    ln -sfn "$target" "$TOOLS/bin/solc"; return 0
  fi
  mkdir -p "$SOLCX_DIR"
  say "solc: trying the native solc $SOLC_VERSION download"
  if timeout 60 "$VENV/bin/python" -c "import solcx,sys; solcx.install_solc('$SOLC_VERSION')" >/dev/null 2>&1 \
     && "$target" --version 2>/dev/null | grep -q "Version: $SOLC_VERSION"; then
    say "solc: native solc $SOLC_VERSION installed"
  else
    have node || fail solc "node not found — install Node.js (apt-get install nodejs)"
    say "solc: native download unreachable; using solc-js $SOLC_VERSION behind tools/solc-wrapper.js"
    cp "$ROOT/tools/solc-wrapper.js" "$TOOLS/solc-wrapper.js"
    printf '#!/bin/sh\nexec node "%s" "$@"\n' "$TOOLS/solc-wrapper.js" > "$target"
    chmod +x "$target"
    "$target" --version | grep -q "Version: $SOLC_VERSION" || fail solc "solc-js wrapper does not answer --version"
  fi
  ln -sfn "$target" "$TOOLS/bin/solc"
}

docker_up() { timeout 10 docker info >/dev/null 2>&1; }

step_docker() {  # the engine: installed from apt if missing, dockerd started if none answers
  STEP=docker
  docker_up && return 0
  have dockerd || apt_install docker.io
  have docker || apt_install docker.io
  have dockerd || fail docker "dockerd not found after installing docker.io — install a Docker engine"
  say "docker: starting dockerd in the background (log: .tools/dockerd.log)"
  need_root "start dockerd"
  as_root sh -c "nohup dockerd >'$TOOLS/dockerd.log' 2>&1 &"
  for _ in $(seq 1 60); do docker_up && return 0; sleep 0.5; done
  fail docker "dockerd did not answer within 30 s (see .tools/dockerd.log) — start a Docker engine by hand"
}

step_tor() {
  STEP=tor
  have tor && have tor-gencert && return 0
  apt_install tor
  have tor-gencert || fail tor "tor-gencert missing after installing tor — install Debian's tor package"
}

step_chromium() {  # Debian's Chromium for the browser tests (Playwright never downloads a browser)
  STEP=chromium
  [ -x /usr/bin/chromium ] && return 0
  apt_install chromium
}

step_image() {  # every sandbox runtime image (the tests use each), built locally (no registry is reachable)
  STEP=image
  have mmdebstrap || apt_install mmdebstrap
  if ! "$VENV/bin/ape" ichain sandbox build --all --quiet >"$TOOLS/image.log" 2>&1; then
    fail image "$(grep -v '^\s*$' "$TOOLS/image.log" | tail -n1) (log: .tools/image.log)"
  fi
  # A successful build says what it did; up-to-date images say nothing.
  cat "$TOOLS/image.log"
}

step_audit() {  # slither in its own venv (.venv-audit): its solc-select 'solc' shim must not shadow ours
  STEP=audit
  local venv="$ROOT/.venv-audit" want; want="$(hash_files "$ROOT/tools/audit-requirements.lock")"
  if [ -x "$venv/bin/slither" ] && stamp_ok audit "$want"; then return 0; fi
  say "audit: installing slither (pinned) into .venv-audit"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || fail audit "python3 -m venv .venv-audit failed — install python3-venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tools/audit-requirements.lock" >"$TOOLS/pip-audit.log" 2>&1 \
    || fail audit "pip install of slither failed (see .tools/pip-audit.log) — check access to the Python package index"
  "$venv/bin/slither" --version >/dev/null 2>&1 || fail audit "slither does not run (see .tools/pip-audit.log)"
  stamp_set audit "$want"
}

main() {
  mkdir -p "$TOOLS"
  local steps=("$@")
  [ ${#steps[@]} -eq 0 ] && steps=(python venv tools solc audit docker tor chromium image)
  for s in "${steps[@]}"; do
    declare -F "step_$s" >/dev/null || fail "$s" "unknown step (known: python venv tools solc audit docker tor chromium image)"
    "step_$s"
  done
}

main "$@"
