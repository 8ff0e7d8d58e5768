# iChain: `make demo` runs a whole marketplace round locally; `make test` runs every test.
# Both run `make setup` first, which installs what is missing and is quick when nothing is.
SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)
APE := $(CURDIR)/.venv/bin/ape
PY := $(CURDIR)/.venv/bin/python
TRANSPORT ?= direct
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit audit bench clean

setup:
	@tools/setup.sh

demo: setup
	@$(APE) ichain demo --transport $(TRANSPORT)

test: setup
	@$(APE) test tests $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory audit

# Static analysis, deep invariant campaign, branch coverage (see tools/audit.sh).
audit: setup
	@tools/audit.sh

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .build out cache .pytest_cache tests/artifacts
