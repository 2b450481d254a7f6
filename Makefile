# The two commands a newcomer runs (README): `make demo` and `make test`.
# Each sets itself up, idempotently: Debian packages when missing, a virtualenv with the package
# and its dev extras (re-installed only when pyproject.toml changes), and the Kafka jars (cached
# per machine in ~/.cache/sagesf).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# chromium: the browser tests/ui drive with Playwright (Playwright's own browser download cannot work here)
DEB_PACKAGES := unixodbc unixodbc-dev libsqliteodbc maven openjdk-17-jre-headless chromium
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: demo test setup lint typecheck unit integration ui bench chaos clean
.DEFAULT_GOAL := test

demo: setup
	$(BIN)/sagesf demo

# two workers for all but the end-to-end tests (tests/conftest.py says why), then those alone
test: setup .sandbox/.deploy-tools lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile --ignore=tests/e2e
	$(BIN)/pytest tests/e2e

setup: $(INSTALLED) .sandbox/.jars

$(INSTALLED): pyproject.toml
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	fi
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@rm -f $(VENV)/.installed-*; touch $@

# the jars live in the per-machine cache; this stamp only saves the check on later runs
.sandbox/.jars: $(INSTALLED) sandbox/kafka/pom.xml
	@mkdir -p .sandbox
	$(BIN)/python -c "from sandbox.kafka import ensure_jars; print('kafka jars:', ensure_jars())"
	@touch $@

# kustomize and promtool, which tests/deploy/ checks deploy/ with: built once per machine from the
# Go module proxy into the same cache (deploy/tools/ensure.sh says how and which versions). Only
# `make test` needs them (the first build takes about 12 minutes on 2 cores); `make demo` does not.
.sandbox/.deploy-tools: deploy/tools/ensure.sh
	@mkdir -p .sandbox
	bash deploy/tools/ensure.sh kustomize promtool
	@touch $@

# lint-imports checks ARCHITECTURE.md's dependency rules ([tool.importlinter] in pyproject.toml)
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

# the web console in Debian's chromium (also part of `make test`); screenshots in test-output/ui/
ui: setup
	$(BIN)/pytest tests/ui

bench: setup
	@for b in bench/*.py; do case "$$b" in bench/__init__.py|bench/chaos.py) ;; *) $(BIN)/python $$b;; esac; done

# the pipeline under load while its parts fail (about 15 minutes): one table, exit 1 on any loss
chaos: setup
	$(BIN)/python -m bench.chaos

clean:
	-[ -x $(BIN)/sagesf ] && $(BIN)/sagesf sandbox down
	rm -rf $(VENV) .sandbox .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
