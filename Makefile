# Neural Architecture — build the book and run every check from a fresh machine.
#   make book   create .venv, install pinned requirements + the package, build the executed HTML book
#   make test   same set-up, then lint, package tests (coverage ≥ 90%), the book, and site checks
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JB_FLAGS := -W -n --keep-going
COVERAGE_MIN := 90

.PHONY: book test lint test-code test-site page clean help

help:
	@echo "make book   build the executed book into _build/html"
	@echo "make test   lint + package tests + book build + built-site checks (what CI runs)"

$(STAMP): requirements.txt code/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e ./code
	touch $(STAMP)

tools/node_modules: tools/package.json tools/package-lock.json
	cd tools && npm ci --silent --no-audit --no-fund
	touch tools/node_modules

book: $(STAMP)
	$(BIN)/jupyter-book build . $(JB_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check code book/_ext tools tests

test-code: $(STAMP)
	$(BIN)/python -m pytest code/tests -q --cov=neuralarch --cov-report=term \
		--cov-fail-under=$(COVERAGE_MIN)

test-site: $(STAMP) tools/node_modules
	$(BIN)/python -m pytest tests -q

test: lint test-code book test-site

page: $(STAMP)
	$(BIN)/python tools/run_page.py $(PAGE)

clean:
	rm -rf _build
