# Quick start: `make run` serves on SQLite; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format schema clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

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

# The benchmark (bench/): BENCH_SMALL=1 for a quick look; BENCH_ARGS="--help" for the rest.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

schema: install
	$(BIN)/greenlight export-schema schema.graphql

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

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
