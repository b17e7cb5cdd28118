# Two commands do all the set-up on a fresh machine: `make up` and `make test`.
# Each creates .venv and installs what it needs (pip, so torch comes from the local CPU wheel).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: up test check lint typecheck format clean install-run install-dev bench faults package

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

# The bench extra is the dev extra plus the profiler, so it stands for both installs.
$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[bench]'
	touch $@ $(VENV)/.dev-installed $(VENV)/.run-installed

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

## The data-plane benchmark: modelfleet vs raw onnxruntime and a plain FastAPI server (README "Benchmark").
## wrk (the load generator) comes from Debian's packages; it is installed when missing.
bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing wrk (apt-get install -y wrk)"; \
	  $$sudo apt-get install -y -q wrk >/dev/null 2>&1 || \
	  { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q wrk >/dev/null; }; \
	} || { echo "make bench: wrk is needed and could not be installed; install it (apt-get install wrk) and retry" >&2; exit 1; }
	$(BIN)/python -m bench

## The fault suite: faults injected into the real local platform, with sent/ok/lost/duplicated per
## row (README "Fault suite"). `make test` runs its short form.
faults: install-dev
	$(BIN)/python -m faults

## The Lambda code asset for the cloud (infra/, docs/deploy-aws.md): dist/lambda.zip, reproducible.
package: install-dev
	$(BIN)/python scripts/package_lambda.py --out dist/lambda.zip

## Lint, types and tests together.
check: lint typecheck test

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .modelfleet .mypy_cache .ruff_cache .hypothesis
