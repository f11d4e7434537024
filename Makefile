# Two commands on a fresh machine with Python 3.11+ and make: `make demo` and `make test`.
# Each one bootstraps itself: a private uv in .uv/ (unless uv is on PATH), then .venv from uv.lock.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard app tests bench alembic devtools)

.PHONY: demo test test-fast check run lint format bench clean help

help:
	@echo "make demo   - migrate + seed a demo marketplace (SQLite), print a token per role, serve on :8000;"
	@echo "              the local Stripe server on :12111 pays its refunds and payouts"
	@echo "make test   - the whole suite, on SQLite and on PostgreSQL (SAV_TEST_DATABASE_URL)"
	@echo "make test-fast - the inner loop: SQLite only, no test that starts a real process"
	@echo "make check  - ruff check, ruff format --check, mypy (strict) on app/"
	@echo "make run    - serve with the current SAV_* settings"

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet "uv==0.13.9"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

demo: $(VENV)/.synced
	$(BIN)/python -m devtools.demo

run: $(VENV)/.synced
	$(BIN)/sav serve

test: $(VENV)/.synced
	$(BIN)/pytest $(PYTEST_ARGS)

# Tests on PostgreSQL carry the `postgresql` mark (tests/conftest.py), tests that start uvicorn, the
# worker or the local Stripe server the `slow` mark (pyproject.toml).
test-fast: $(VENV)/.synced
	$(BIN)/pytest -m "not postgresql and not slow" $(PYTEST_ARGS)

check: $(VENV)/.synced
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy app

format: $(VENV)/.synced
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

bench: $(VENV)/.synced
	$(BIN)/python -m bench.run --help

clean:
	rm -rf $(VENV) .uv .pytest_cache .mypy_cache .ruff_cache sav.db sav.db-* demo.db demo.db-*
