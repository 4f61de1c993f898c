# ml_app: `make run` serves the demo models, `make test` runs the test suite. Both set up
# everything they need (virtualenv, pinned dependencies, demo models) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= model/store
HOST   ?= 127.0.0.1
PORT   ?= 8000

export ML_APP_STORE ?= $(abspath $(STORE))

.PHONY: help venv dev e2e-deps model run test unit integration e2e lint format clean

help:
	@echo "make run    - set up and serve on $(HOST):$(PORT) (PORT, WEB_CONCURRENCY override)"
	@echo "make test   - set up and run unit + integration tests"
	@echo "make e2e    - end-to-end tests against real external parts"
	@echo "make lint   - ruff check and format check"
	@echo "make model  - train the demo models into $(STORE) if missing"

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev: requirements-dev.txt requirements.txt $(BIN)/.runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Test-only clients and tools for the end-to-end layer.
$(BIN)/.e2e: requirements-e2e.txt $(BIN)/.dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-e2e.txt
	touch $@

venv: $(BIN)/.runtime
dev: $(BIN)/.dev
e2e-deps: $(BIN)/.e2e

model: venv
	$(BIN)/python -m model.train --store $(ML_APP_STORE)

run: venv model
	HOST=$(HOST) PORT=$(PORT) exec $(BIN)/gunicorn --config gunicorn.conf.py

test: dev
	$(BIN)/python -m pytest tests/unit tests/integration

unit: dev
	$(BIN)/python -m pytest tests/unit

integration: dev
	$(BIN)/python -m pytest tests/integration

e2e: e2e-deps
	$(BIN)/python -m pytest tests/e2e

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
