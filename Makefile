# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-lowest lint setup-demo setup-test testbed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,notebook,root,xrootd]'
	touch $@ $(VENV)/.demo-installed

setup-demo: $(VENV)/.demo-installed
setup-test: $(VENV)/.test-installed

## demo: set up the environment and run the full pipeline on the built-in synthetic sample
demo: setup-demo
	$(BIN)/bumpnet-masses --local --demo

## testbed: start the local Slurm/Torque batch system the `pbs` tests use (needs root)
testbed:
	@if [ "$$(id -u)" = 0 ]; then bash cluster/testbed/start.sh; \
	else echo "not root: skipping the local batch system; pbs tests will skip"; fi

## test: set up the environment, start the local batch system (root only) and run every test
test: setup-test testbed
	$(BIN)/python -m pytest

## test-lowest: the lowest allowed core versions (pyproject's >= bounds) in a separate venv, fast tests
## (minutes: a fresh resolve and install; not part of `make test`)
test-lowest:
	PYTHON=$(PYTHON) .ci/test-lowest

lint: setup-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
