# modelport: `make run` installs everything and starts the server with demo endpoints;
# `make test` installs everything and runs the linters and the test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
PORT   ?= 8080
DATA   ?= $(HOME)/.modelport

.PHONY: install run test lint unit docs format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# /opt/wheels holds the CPU build of torch on the project's machines; elsewhere the torch
# extra is left out rather than pulling gigabytes of CUDA packages from the index.
COMMA  := ,
EXTRAS := dev$(if $(wildcard /opt/wheels),$(COMMA)torch,)
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

install: $(UV)
	$(UV) pip install --quiet --python $(BIN)/python $(FIND_LINKS) -e ".[$(EXTRAS)]"

run: install
	$(BIN)/modelport serve --demo --port $(PORT) --data-dir $(DATA) --log-format text

lint: install
	$(BIN)/ruff check modelport tests scripts
	$(BIN)/ruff format --check modelport tests scripts
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit -q

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

docs: install
	$(BIN)/python scripts/gen_docs.py

format: install
	$(BIN)/ruff format modelport tests
	$(BIN)/ruff check --fix modelport tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
