# One place for every developer command. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data

PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
ARGS ?=

.PHONY: install run test check format lint typecheck crash soak bench bench-compare clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/vecstore serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format vecstore tests benchmarks migrations

lint: $(STAMP)
	$(BIN)/ruff format --check vecstore tests benchmarks migrations
	$(BIN)/ruff check vecstore tests benchmarks migrations

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The long kill -9 run (make test runs a short one); its report is what docs/reliability.md shows.
CRASH_ARGS ?= --cycles 200 --json docs/crash-report.json --markdown docs/crash-report.md
crash: $(STAMP)
	$(BIN)/python -m tests.crash $(CRASH_ARGS)

# The 10-minute soak (make test runs 30 s of it).
SOAK_ARGS ?= --duration 600 --json docs/soak-report.json --markdown docs/soak-report.md
soak: $(STAMP)
	$(BIN)/python -m tests.soak $(SOAK_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# The peers (Chroma, pgvector, Milvus Lite, LanceDB) live in their own venv, with the bench
# extra (torch & co.: their docstrings are part of the text corpus): GBs that neither `make test`
# nor CI needs. `make bench-compare ARGS="--dataset docs-10k"` passes options on.
$(PEERS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -e '.[dev,bench,peers]'
	touch $(PEERS_STAMP)

bench-compare: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python -m benchmarks.compare $(ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .mypy_cache .ruff_cache .pytest_cache
