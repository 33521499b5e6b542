# Quick start: `make run` serves on SQLite; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Every install is from the locks in requirements/ (exact versions, checked by hash), so two
# installs a month apart are the same; `make lock` refreshes them after pyproject.toml changes.
LOCK := requirements/dev.txt
RUNTIME_LOCK := requirements/runtime.txt
CHECKOV_LOCK := requirements/checkov.txt
# The stamp's name follows pyproject.toml and the lock: a change to either reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat $(CHECKOV_LOCK) | cksum | cut -d' ' -f1)
COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"
SBOM ?= greenlight.cdx.json
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install checkov run test lint format schema lock sbom clean bench

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# checkov (the deploy/ lint in the tests) in a venv of its own: its dependencies conflict
# with Greenlight's. Without it the checkov test skips.
$(CHECKOV_STAMP): $(CHECKOV_LOCK)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes -r $(CHECKOV_LOCK)
	rm -f $(CHECKOV_VENV)/.installed-*
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)

run: install
	$(BIN)/greenlight serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-resolve the locks from pyproject.toml (and requirements/*.in) against PyPI, for every
# Python 3.11.x on every platform. Run it after changing a dependency, and commit the result.
# UPGRADE="--upgrade" moves every package to its newest allowed version;
# UPGRADE="--upgrade-package NAME" only that one.
lock: install
	$(COMPILE) $(UPGRADE) pyproject.toml requirements/build.in --extra dev -o $(LOCK)
	$(COMPILE) pyproject.toml requirements/build.in -c $(LOCK) -o $(RUNTIME_LOCK)
	$(COMPILE) $(UPGRADE) requirements/checkov.in -o $(CHECKOV_LOCK)

# A CycloneDX SBOM of what the image installs (the runtime lock), with each package's hashes.
sbom: install
	$(BIN)/cyclonedx-py requirements --pyproject pyproject.toml --output-format JSON \
		--output-file $(SBOM) $(RUNTIME_LOCK)
	@echo "wrote $(SBOM)"

# The benchmark (bench/): BENCH_SMALL=1 for a quick look; BENCH_ARGS="--help" for the rest.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

schema: install
	$(BIN)/greenlight export-schema schema.graphql

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache

# --- console (console/: the web console's source; its bundle ships in greenlight/console/static/) ---
# `make console` rebuilds the bundle and GraphiQL's files from console/package-lock.json;
# `make console-check` (CI) fails if the shipped bundle differs from the rebuilt one;
# `make console-budget` reports the bundle's compressed size and the first screen's time.
.PHONY: console console-check console-budget
console:
	cd console && npm ci --no-audit --no-fund && npm run build

console-check: console
	git diff --exit-code --stat -- greenlight/console/static console/src/graphql-env.d.ts
	test -z "$$(git status --porcelain -- greenlight/console/static)"

console-budget: install
	$(BIN)/python -m greenlight.console.budget
