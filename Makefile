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
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: book test lint test-code test-site page report bench-execution clean help

help:
	@echo "make book   build the executed book into _build/html"
	@echo "make test   lint + package tests + book build + built-site checks (what CI runs)"
	@echo "make report the last build's time per page and per shared model, and the cold total"
	@echo "make bench-execution  cold execution of the book, serial then parallel (slow)"

$(STAMP): requirements.txt code/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e ./code
	touch $(STAMP)

tools/node_modules: tools/package.json tools/package-lock.json
	cd tools && npm ci --silent --no-audit --no-fund
	touch tools/node_modules

# Execute first (shared models, then pages in parallel, into the execution cache), then let
# Sphinx render; a failed page fails the build after both steps have reported everything.
book: $(STAMP) tools/node_modules
	$(BIN)/python tools/execute_book.py; executed=$$?; \
	$(BIN)/jupyter-book build . $(JB_FLAGS) && exit $$executed

report: $(STAMP)
	$(BIN)/python tools/execute_book.py --report

bench-execution: $(STAMP)
	$(BIN)/python tools/execute_book.py --bench

lint: $(STAMP)
	$(BIN)/ruff check code book/_ext tools tests
	cd code && ../$(BIN)/lint-imports --no-cache --no-logo

test-code: $(STAMP)
	$(BIN)/python -m pytest code/tests -q -n $(JOBS) --cov=neuralarch --cov-report=term \
		--cov-fail-under=$(COVERAGE_MIN)

# One file per worker (--dist loadfile): the browser checks share one browser run per file.
test-site: $(STAMP) tools/node_modules
	$(BIN)/python -m pytest tests -q -n $(JOBS) --dist loadfile

test: lint test-code book test-site

page: $(STAMP)
	$(BIN)/python tools/run_page.py $(PAGE)

clean:
	rm -rf _build
