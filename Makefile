# Only python3 and make are assumed. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench setup compile clean

setup: compile

# The venv is rebuilt whenever the lock or the project's metadata changes.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# pip compiles the packages it installs, not an editable project: without this, a machine that
# writes no bytecode (PYTHONDONTWRITEBYTECODE) compiles the project at every cron run.
compile: $(STAMP)
	$(BIN)/python -m compileall -q pipelines

demo: compile
	$(BIN)/sixtyfour-sync demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/mypy

bench: compile
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var
