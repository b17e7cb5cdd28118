# Two commands do all the set-up on a fresh machine: `make up` and `make test`.
# Each creates .venv and installs what it needs (pip, so torch comes from the local CPU wheel).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: up test check lint typecheck format clean install-run install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools

# Markers are keyed on pyproject.toml, so a changed dependency list reinstalls.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local,examples]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.run-installed

install-run: $(VENV)/.run-installed
install-dev: $(VENV)/.dev-installed

## The local platform, with the example model deployed, in the foreground (Ctrl-C stops it).
up: install-run
	$(BIN)/modelfleet up

## The test suite (unit + end-to-end against the real local platform).
test: install-dev
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy modelfleet schemas functions

## Lint, types and tests together.
check: lint typecheck test

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .modelfleet .mypy_cache .ruff_cache .hypothesis
