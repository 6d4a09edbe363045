# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export HELIOGRAPH_DATABASE_URL ?= sqlite+aiosqlite:///var/heliograph.db

.PHONY: install run test lint bench fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	# ffmpeg decodes voice notes; espeak-ng speaks the test clips that whisper transcribes;
	# libopencore-amrnb0 encodes the AMR-NB (MMS) test clip (Debian's ffmpeg cannot).
	command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && \
	  ldconfig -p | grep -q libopencore-amrnb.so.0 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    ffmpeg espeak-ng libopencore-amrnb0; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch (openai-whisper's engine); a plain `torch` would pull CUDA (GBs).
	$(BIN)/python -m pip install -q torch==2.13.0
	# openai-whisper's metadata pulls triton (~1 GB) that CPU inference never uses.
	$(BIN)/python -m pip install -q --no-deps openai-whisper==20250625
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	HELIOGRAPH_LOG_FORMAT=text $(BIN)/heliograph migrate
	HELIOGRAPH_LOG_FORMAT=text $(BIN)/heliograph seed-demo
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
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/transcribe.py
	$(BIN)/python bench/language.py

# Schemathesis over the whole OpenAPI as an admin, 20,000+ cases: no answer may be a 5xx
# (docs/fuzzing.md). `make test` runs a bounded 300 of them (tests/fuzz/test_fuzz.py).
fuzz: install
	$(BIN)/python -m tests.fuzz.runner --cases 20000 --seed 14

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
