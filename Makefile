# Telemetry Lake — every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
DEMO_DEVICES ?= 25
DEMO_MINUTES ?= 90

.DEFAULT_GOAL := help
.PHONY: help setup system-deps up down status demo dag test test-unit test-integration lint bench airflow clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.txt -e .
	@# The Spark provider >= 6 pulls pyspark-client, which silently breaks `import pyspark`.
	$(BIN)/python -c "import pyspark, pyspark.sql.connect.session, pysail, airflow, fastapi; print('pyspark', pyspark.__version__)"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything from requirements.txt

up: setup ## Start SeaweedFS, Sail and the ingest API (idempotent)
	$(BIN)/tlake up

down: ## Stop what `make up` started
	$(BIN)/tlake down

status: setup ## Health, endpoints and registry counts
	$(BIN)/tlake status

demo: setup ## The whole pipeline on the embedded stack: up, simulate every source, DAG once, report
	$(BIN)/tlake up
	@# IoT first: it goes over MQTT, and the bridge lands it while the other sources post.
	$(BIN)/tlake simulate --profile iot-temperature --minutes 2 --bad-rate 0.01
	$(BIN)/tlake simulate --profile mobile --devices $(DEMO_DEVICES) --minutes $(DEMO_MINUTES) --bad-rate 0.02
	$(BIN)/tlake simulate --profile atm-fleet --devices 1000 --minutes 60 --outage-after-minutes 45 --bad-rate 0.01
	$(BIN)/tlake simulate --profile store-traffic --hours 24 --bad-rate 0.01
	$(BIN)/tlake simulate --profile stream --minutes 5 --bad-rate 0.01
	$(BIN)/tlake dag --once
	$(BIN)/tlake report

dag: setup ## Run the Airflow DAG once in-process (dag.test) against the running stack
	$(BIN)/tlake dag --once

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq

system-deps: ## Debian packages the tests drive: docker-compose (config check), Chromium + driver
	@command -v docker-compose >/dev/null || ($(APT_INSTALL) docker-compose)
	@{ command -v chromium && command -v chromedriver; } >/dev/null || ($(APT_INSTALL) chromium chromium-driver)

test: setup system-deps ## The whole suite: unit tests, then integration tests against a private real stack
	$(BIN)/pytest tests

test-unit: setup ## Unit tests only (no services)
	$(BIN)/pytest tests/unit

test-integration: setup ## Integration tests only
	$(BIN)/pytest tests/integration

lint: setup ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup ## Benchmarks (print figures as ratios against an in-run baseline); installs wrk
	@command -v wrk >/dev/null || ($(APT_INSTALL) wrk)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/engines.py

airflow: setup ## Airflow standalone (UI on :8080) with our dags folder, for watching runs
	$(BIN)/tlake airflow-standalone

.PHONY: dashboard
dashboard: setup ## Streamlit dashboard on http://127.0.0.1:8501 (reads PostgreSQL only; `make demo` fills it)
	$(BIN)/streamlit run dashboard/app.py --server.address 127.0.0.1 --server.port 8501 --server.headless true --browser.gatherUsageStats false

.PHONY: compose-check
compose-check: ## Validate docker-compose.yml with the .env.example placeholders (docker-compose, no engine)
	@command -v docker-compose >/dev/null || { echo "docker-compose is missing: apt-get install -y docker-compose"; exit 1; }
	docker-compose --env-file .env.example --profile cluster config -q && echo "docker-compose.yml: valid"

clean: down ## Stop the stack and delete local state (.tlake)
	rm -rf .tlake
