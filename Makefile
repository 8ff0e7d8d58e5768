# iChain: `make demo` runs a whole marketplace round locally; `make test` runs every test.
# Both run `make setup` first, which installs what is missing and is quick when nothing is.
SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)
APE := $(CURDIR)/.venv/bin/ape
PY := $(CURDIR)/.venv/bin/python
TRANSPORT ?= direct
PYTEST_ARGS ?=

.PHONY: setup demo test check audit mutation bench clean manifest dist

setup:
	@tools/setup.sh

demo: setup
	@$(APE) ichain demo --transport $(TRANSPORT)

test: setup check
	@$(APE) test tests $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory audit

# Static checks of the package: its layers and import cycles (import-linter contracts in pyproject.toml),
# then its types (mypy, settings in pyproject.toml).
check: setup
	@$(CURDIR)/.venv/bin/lint-imports
	@$(CURDIR)/.venv/bin/mypy

# Static analysis, deep invariant campaign, branch coverage (see tools/audit.sh).
audit: setup
	@tools/audit.sh

# Mutation testing of the contracts (not part of make test): slither-mutate's operators, each mutant built and
# run against the forge suite; writes bench/results/mutation.json. Every mutant (~1,750 patches) takes hours on
# 2 cores with solc-js; MUTATION_ARGS=--sample 8 (the committed figures) about 26 minutes. Other options:
# --operators RR,CR, --jobs 1, --annotate (re-read tools/mutation_survivors.json); see tools/mutation.py --help.
MUTATION_ARGS ?=
mutation: setup
	@$(CURDIR)/.venv-audit/bin/python tools/mutation.py $(MUTATION_ARGS)

# The contract manifest packaged in ichain/contracts/manifest.json (ABIs, bytecode, sources, compiler settings):
# rebuild and commit it after changing contracts/ (tests/unit/test_packaging.py fails while it is stale).
manifest: setup
	@$(PY) tools/build_manifest.py

# The wheel and sdist of the ape-ichain plugin, in dist/ (install with `pip install dist/ape_ichain-*.whl`).
dist: setup
	@rm -rf dist && $(PY) -m build --outdir dist $(CURDIR) >/dev/null && ls dist

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .build out cache dist build ichain-verify .pytest_cache .mypy_cache .import_linter_cache tests/artifacts
