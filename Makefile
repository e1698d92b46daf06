# billing-desk: `make run` installs and starts the application; `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV := .venv
BIN := $(VENV)/bin
# PySide6 on CPython 3.11 can abort the interpreter at exit, so prefer 3.12 or newer when present.
# Each candidate is probed by running it: a pyenv shim may exist and still fail.
BASE_PYTHON ?= $(shell tools/find-python)
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
APP_STAMP := $(VENV)/.app-$(DEPS_HASH)
TEST_STAMP := $(VENV)/.test-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: run test lint bench package screenshots clean

$(BIN)/python:
	@tools/make-venv "$(BASE_PYTHON)" "$(VENV)"

$(APP_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): $(APP_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: $(APP_STAMP)
	$(BIN)/billing-desk $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(TEST_STAMP)
	@tools/ensure-postgres
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)
	@echo "== the tests that read the time, again on a Saturday night in UTC+14 (tests/conftest.py)"
	BILLING_DESK_TEST_CLOCK=weekend-night TZ=Pacific/Kiritimati \
	  $(BIN)/python -m pytest -n 2 --dist loadfile -q -m clock $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	@tools/ensure-postgres
	@for script in $(wildcard bench/*.py); do echo "== $$script"; $(BIN)/python "$$script" || exit 1; done

# The desktop bundle: one folder with the `billing-desk` program, a tarball of it, and its
# self-test run from the folder (packaging/README.md).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BUNDLE := dist/billing-desk-$(VERSION)-linux-$(shell uname -m).tar.gz
package: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,package]'
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/billing-desk.spec
	cp packaging/billing-desk.desktop packaging/billing-desk.metainfo.xml src/billing_desk/resources/icons/billing-desk.png dist/billing-desk/
	tar -C dist -czf $(BUNDLE) billing-desk
	QT_QPA_PLATFORM=offscreen dist/billing-desk/billing-desk --self-test
	@du -sh dist/billing-desk $(BUNDLE)

# The README's and the user guide's pictures, from the real application on demo data.
screenshots: $(APP_STAMP)
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
