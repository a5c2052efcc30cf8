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

# Reinstall only when the dependency list changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[nats]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[nats,dev]"
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/marquee up

cluster: $(VENV)/.installed-run
	$(BIN)/marquee cluster

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src plugins tests bench
	$(BIN)/ruff format --check src plugins tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint typecheck

# Browser tests drive Playwright's own event loop, so they run in a pytest of their own.
test: check
	$(BIN)/pytest --ignore=tests/browser
	$(BIN)/pytest tests/browser


# The hot sale: 1,000 buyers x 10 attempts for 100 tickets, three rounds, with the hello-world baseline.
bench: $(VENV)/.installed-run
	@mkdir -p var
	$(BIN)/marquee bench flash-sale --rounds 3 --baseline --json var/bench-embedded.json

bench-distributed: $(VENV)/.installed-run
	@mkdir -p var
	$(BIN)/marquee bench flash-sale --mode distributed --booking 2 --gateways 2 --rounds 3 --baseline --json var/bench-distributed.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
