# Two commands set everything up: `make run` and `make test` (each creates .venv on first use).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= $(or $(OPENCLAW_CONFIG_PATH),examples/openclaw.dev.json5)
export OPENCLAW_STATE_DIR ?= $(CURDIR)/.state

.PHONY: run test lint fmt check clean soak bench

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(STAMP)
	$(PY) app.py --config $(CONFIG) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The reliability suite with soak numbers: 6x the fuzzing examples, a 10-minute load phase.
soak: $(STAMP)
	OPENCLAW_SOAK=1 $(PY) -m pytest -q tests/reliability $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix -q .
	$(VENV)/bin/ruff format -q .

check: lint test

# Benchmarks (not tests): gateway vs a bare passthrough, added latency, held streams, sessions.
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
