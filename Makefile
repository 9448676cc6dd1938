# Two entry points that work on a fresh machine: `make run` and `make test`.
# Everything they need (Python packages, Kafka's jars, PostgreSQL, docker compose, headless Chromium) is installed on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install infra-up infra-down

$(BIN)/spanstream: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Spanstream needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/spanstream

## Kafka, PostgreSQL, migrations, worker and API on the embedded defaults, with demo spans.
run: install
	$(BIN)/spanstream dev

## The whole test suite against real Kafka, PostgreSQL and chdb (started and stopped by the tests).
test: install
	bash infra/docker-compose.sh
	bash infra/chromium.sh
	$(BIN)/python -m pytest

infra-up: install
	$(BIN)/spanstream infra up

infra-down: install
	$(BIN)/spanstream infra down
