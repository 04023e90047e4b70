# Every target creates .venv and installs what it needs when missing: a fresh clone with only
# python3 present is enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-pg stress lint bench clean

# Tests use THREADSTORE_TEST_PG_URL when set; otherwise the local server when one answers on
# 127.0.0.1:5432 (as on the development machines), else testcontainers, else they skip.
THREADSTORE_TEST_PG_URL ?= $(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo postgresql://postgres@127.0.0.1:5432/postgres)
export THREADSTORE_TEST_PG_URL

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)  ## the README quickstart: in-memory, then a SQLite file in a temp dir
	$(BIN)/python -m threadstore.quickstart

test: $(STAMP)  ## the whole suite: memory and SQLite always, PostgreSQL when one is found
	$(BIN)/python -m pytest -q

test-pg: $(STAMP)  ## only the PostgreSQL-backed tests
	$(BIN)/python -m pytest -q -m pg

stress: $(STAMP)  ## tests/reliability's heavy variants: ten times the counts, 500 examples a property
	THREADSTORE_STRESS=1 HYPOTHESIS_PROFILE=stress $(BIN)/python -m pytest -q tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check threadstore tests bench
	$(BIN)/mypy --strict threadstore

bench: $(STAMP)
	@echo "make bench arrives with the benchmark issue; bench/ is empty for now"

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
