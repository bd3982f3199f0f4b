# Set-up and everyday commands. `make chat` and `make test` set everything up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup chat test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)           ## create .venv and install ohlora (torch==2.13.0 CPU wheel)

chat: $(STAMP)            ## talk to Oh-LoRA in the terminal (ARGS="--user kim --show-memory")
	$(BIN)/ohlora chat $(ARGS)

test: $(STAMP)            ## every test, the slow end-to-end ones on the real default model included
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP)       ## unit tests only (seconds)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
