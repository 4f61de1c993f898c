# ml_app: `make run` serves the demo models, `make test` runs the test suite. Both set up
# everything they need (virtualenv, pinned dependencies, demo models) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= model/store
HOST   ?= 127.0.0.1
PORT   ?= 8000

export ML_APP_STORE ?= $(abspath $(STORE))

# Prometheus multiprocess directory for `make run` (one per port; emptied when Gunicorn starts).
METRICS_DIR ?= /tmp/ml_app-metrics-$(PORT)
# Test servers get their own; one inherited from the shell would put the in-process unit tests
# in multiprocess mode.
unexport PROMETHEUS_MULTIPROC_DIR

# Container image: `make build`, `make run-container`, `make push REGISTRY=...`.
IMAGE    ?= ml_app
TAG      ?= latest
REGISTRY ?=
# The image listens on 8000 inside; published on $(HOST):$(PORT). Override the whole set to run
# detached, on the host network or with extra settings (-e WEB_CONCURRENCY=4 ...).
# deploy/keys holds the API keys file the image reads (keys --file deploy/keys/keys.json add ID).
DOCKER_RUN_FLAGS ?= --rm --stop-timeout 40 -p $(HOST):$(PORT):8000 \
	-v $(CURDIR)/deploy/keys:/run/secrets/ml_app-keys:ro

.PHONY: help venv dev e2e-deps prometheus-tools proxy-tools model run run-proxy test unit integration e2e lint format \
	clean build run-container push compose-up compose-down train-deps bench

help:
	@echo "make run    - set up and serve on $(HOST):$(PORT) (PORT, WEB_CONCURRENCY override)"
	@echo "make run-proxy - the same behind nginx (buffering, timeouts, body limit) on $(HOST):$(PORT)"
	@echo "make test   - set up and run unit + integration tests"
	@echo "make e2e    - end-to-end tests against real external parts"
	@echo "make lint   - ruff check, format check and the import contracts (layers, no cycles)"
	@echo "make model  - train the demo models into $(STORE) if missing"
	@echo "make build  - build the container image $(IMAGE):$(TAG)"
	@echo "make run-container - run it on $(HOST):$(PORT) (DOCKER_RUN_FLAGS override)"
	@echo "make push REGISTRY=host/path - tag and push the image there"
	@echo "make compose-up - ml_app + Prometheus (:9090) + Grafana (:3000) with docker compose"
	@echo "make bench  - throughput, latency and memory against a bare-WSGI ceiling (bench/)"

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Training and ONNX conversion tools: needed to write model versions, not to serve them.
$(BIN)/.train: requirements-train.txt requirements.txt $(BIN)/.runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-train.txt
	touch $@

$(BIN)/.dev: requirements-dev.txt requirements-train.txt requirements.txt $(BIN)/.train
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Test-only clients and tools for the end-to-end layer.
$(BIN)/.e2e: requirements-e2e.txt $(BIN)/.dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-e2e.txt
	touch $@

# promtool and the Prometheus server (Debian package `prometheus`): the metrics checks run the
# real ones. Installed once, when missing; the lock timeout waits out a concurrent apt run.
prometheus-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		apt-get -o DPkg::Lock::Timeout=600 update && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
			--no-install-recommends prometheus; }

venv: $(BIN)/.runtime
train-deps: $(BIN)/.train
dev: $(BIN)/.dev
e2e-deps: $(BIN)/.e2e

model: train-deps
	$(BIN)/python -m model.train --store $(ML_APP_STORE)

run: venv model
	HOST=$(HOST) PORT=$(PORT) PROMETHEUS_MULTIPROC_DIR=$(METRICS_DIR) \
		exec $(BIN)/gunicorn --config gunicorn.conf.py

# The same app behind the bundled nginx configuration on $(HOST):$(PORT): Gunicorn listens on a
# private Unix socket, nginx buffers clients (slow ones included) in front of it.
PROXY_DIR ?= /tmp/ml_app-proxy-$(PORT)
run-proxy: venv model proxy-tools
	rm -rf $(PROXY_DIR) && mkdir -p $(PROXY_DIR)
	$(BIN)/python -m ml_app proxy-config --run-dir $(PROXY_DIR) --listen $(HOST):$(PORT) \
		--upstream unix:$(PROXY_DIR)/gunicorn.sock
	GUNICORN_BIND=unix:$(PROXY_DIR)/gunicorn.sock ML_APP_PROXY_HOPS=1 \
		PROMETHEUS_MULTIPROC_DIR=$(METRICS_DIR) $(BIN)/gunicorn --config gunicorn.conf.py & \
		gunicorn=$$!; trap 'kill $$gunicorn 2>/dev/null; wait $$gunicorn' EXIT INT TERM; \
		nginx -c $(PROXY_DIR)/nginx.conf -e stderr

# nginx (Debian package `nginx`) for make run-proxy; the e2e tests install it the same way.
proxy-tools:
	@command -v nginx >/dev/null || { \
		apt-get -o DPkg::Lock::Timeout=600 update && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
			--no-install-recommends nginx; }

test: dev prometheus-tools
	$(BIN)/python -m pytest tests/unit tests/integration

unit: dev
	$(BIN)/python -m pytest tests/unit

integration: dev prometheus-tools
	$(BIN)/python -m pytest tests/integration

e2e: e2e-deps prometheus-tools
	$(BIN)/python -m pytest tests/e2e

# Load test against real Gunicorn (wrk is installed from Debian when missing); see bench/.
bench: dev model
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.v2_binary
	$(BIN)/python -m bench.memory_peak
	$(BIN)/python -m bench.scrape
	$(BIN)/python -m bench.rate_limits
	$(BIN)/python -m bench.feature_lookup
	$(BIN)/python -m bench.payload_log
	$(BIN)/python -m bench.drift

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build:
	docker build --tag $(IMAGE):$(TAG) .
	@docker image inspect --format '$(IMAGE):$(TAG) is {{.Size}} bytes' $(IMAGE):$(TAG)

run-container:
	docker run $(DOCKER_RUN_FLAGS) $(IMAGE):$(TAG)

push:
	@test -n "$(REGISTRY)" || { echo "set REGISTRY, e.g. make push REGISTRY=ghcr.io/acme"; exit 2; }
	docker tag $(IMAGE):$(TAG) $(REGISTRY)/$(IMAGE):$(TAG)
	docker push $(REGISTRY)/$(IMAGE):$(TAG)

compose-up:
	docker compose up --build --detach
	@echo "ml_app http://localhost:8000  Prometheus http://localhost:9090  Grafana http://localhost:3000"

compose-down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
