# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export HELIOGRAPH_DATABASE_URL ?= sqlite+aiosqlite:///var/heliograph.db

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(BIN)/heliograph migrate
	$(BIN)/heliograph seed-demo
	HELIOGRAPH_DEMO_MODE=1 $(BIN)/heliograph demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/lookup.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
