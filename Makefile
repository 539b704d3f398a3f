# The two commands of the README's quick start: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= 2.13.0

.PHONY: bench test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	# torch first, pinned to its CPU build: sentence-transformers (the semantic extra) would otherwise pull a multi-GB CUDA one
	$(BIN)/python -m pip install --quiet 'torch==$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(BIN)/rapo bench --out bench-results

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) bench-results
