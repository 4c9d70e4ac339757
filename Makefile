# Two commands on a fresh machine: `make run` and `make test` (Python 3.11+ and make, nothing else).
# Both first make sure the system packages the suite uses are there (servers/system_packages.py:
# installs them as root, otherwise prints the one command to run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install clean system-packages-run system-packages-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

system-packages-run:
	$(PYTHON) -m servers.system_packages --for run

system-packages-test:
	$(PYTHON) -m servers.system_packages --for test

install: $(STAMP)

run: system-packages-run $(STAMP)
	$(BIN)/toolsuite serve all

test: system-packages-test $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
