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

# threadstore against the raw-driver floor (README, Performance): about 10 minutes; QUICK=1 is a
# one-minute smoke run. PEERS=1 adds slide-narrator and langchain-postgres, installed into a
# separate environment (.venv-peers) so they never reach the test environment or the package.
# PostgreSQL: THREADSTORE_BENCH_PG_URL, else the local server; the bench makes its own database.
BENCH_FLAGS := $(if $(filter 1,$(QUICK)),--quick)
PEERS_VENV  := .venv-peers

bench: $(STAMP)
ifeq ($(PEERS),1)
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -e '.[bench-peers]'
	$(PEERS_VENV)/bin/python -m bench --peers $(BENCH_FLAGS)
else
	$(BIN)/python -m bench $(BENCH_FLAGS)
endif

clean:
	rm -rf $(VENV) $(PEERS_VENV) build dist .pytest_cache .mypy_cache .ruff_cache
