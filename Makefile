# The two commands a person needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help
.PHONY: help run test check lint typecheck unit cluster bench bench-distributed clean

help:
	@echo "make run     start Marquee on embedded defaults at http://127.0.0.1:8000"
	@echo "make test    lint, type-check and run the whole test suite"
	@echo "make check   lint and type-check only"
	@echo "make cluster every service as its own process on PostgreSQL, Redis and NATS"
	@echo "make bench   the hot-sale benchmark, all-in-one (make bench-distributed: on PostgreSQL, Redis, NATS)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"

# Exact versions come from uv.lock (`$(UV) lock` after editing pyproject.toml's dependencies);
# uv itself is installed into the venv from PyPI, so a machine needs nothing but Python.
UV := UV_PYTHON_DOWNLOADS=never $(BIN)/uv
SYNC := $(UV) sync --locked --inexact --python $(BIN)/python

$(BIN)/uv: | $(BIN)/python
	$(PIP) install "uv>=0.5,<1"

# Reinstall only when the lock or the dependency list changes.
$(VENV)/.installed-run: pyproject.toml uv.lock | $(BIN)/uv
	$(SYNC) --extra nats
	@touch $@

$(VENV)/.installed-bench: pyproject.toml uv.lock | $(BIN)/uv
	$(SYNC) --extra nats --extra bench
	@touch $@

$(VENV)/.installed-dev: pyproject.toml uv.lock | $(BIN)/uv
	$(SYNC) --extra dev
	@touch $@ $(VENV)/.installed-run $(VENV)/.installed-bench

run: $(VENV)/.installed-run
	$(BIN)/marquee up

cluster: $(VENV)/.installed-run
	$(BIN)/marquee cluster

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src plugins tests bench
	$(BIN)/ruff format --check src plugins tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint typecheck

# Browser tests drive Playwright's own event loop, so they run in a pytest of their own.
test: check
	$(BIN)/pytest --ignore=tests/browser
	$(BIN)/pytest tests/browser


# The hot sale: 1,000 buyers x 10 attempts for 100 tickets, three rounds, with the hello-world baseline.
bench: $(VENV)/.installed-bench
	@mkdir -p var
	$(BIN)/marquee bench flash-sale --rounds 3 --baseline --json var/bench-embedded.json

bench-distributed: $(VENV)/.installed-bench
	@mkdir -p var
	$(BIN)/marquee bench flash-sale --mode distributed --booking 2 --gateways 2 --rounds 3 --baseline --json var/bench-distributed.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
