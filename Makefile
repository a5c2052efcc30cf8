# The two commands a person needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help
.PHONY: help run test check lint typecheck unit cluster clean

help:
	@echo "make run     start Marquee on embedded defaults at http://127.0.0.1:8000"
	@echo "make test    lint, type-check and run the whole test suite"
	@echo "make check   lint and type-check only"
	@echo "make cluster every service as its own process on PostgreSQL, Redis and NATS"

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


clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
