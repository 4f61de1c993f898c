# ml_app: `make run` serves the demo models, `make test` runs the test suite. Both set up
# everything they need (virtualenv, pinned dependencies, demo models) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= model/store
HOST   ?= 127.0.0.1
PORT   ?= 8000

export ML_APP_STORE ?= $(abspath $(STORE))

.PHONY: help venv dev model run test unit integration lint format clean

help:
	@echo "make run    - set up and serve on $(HOST):$(PORT) (PORT, WEB_CONCURRENCY override)"
	@echo "make test   - set up and run unit + integration tests"
	@echo "make lint   - ruff check and format check"
	@echo "make model  - train the demo models into $(STORE) if missing"

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev: requirements-dev.txt requirements.txt $(BIN)/.runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.runtime
dev: $(BIN)/.dev

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

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
