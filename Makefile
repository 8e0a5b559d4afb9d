# The two commands a newcomer needs: `make up` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STATE_DIR ?=

.PHONY: install up test lint unit conformance conformance-image conformance-compute conformance-network conformance-volume conformance-placement bench bench-placement \
	debian-packages

install: debian-packages $(STAMP)

debian-packages:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		scripts/install-debian-packages.sh; \
	fi

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing pocketstack with its test tools"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@$(BIN)/python -m compileall -q pocketstack
	@touch $@

up: install
	@$(BIN)/python -m compileall -q pocketstack
	$(BIN)/pocketstack up $(if $(STATE_DIR),--state-dir $(STATE_DIR))

lint: install
	$(BIN)/ruff check pocketstack tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install lint
	$(BIN)/pytest -p no:cacheprovider

conformance: install
	tests/peer/run-tempest.sh identity

conformance-image: install
	tests/peer/run-tempest.sh image

conformance-compute: install
	tests/peer/run-tempest.sh compute

conformance-network: install
	tests/peer/run-tempest.sh network

conformance-volume: install
	tests/peer/run-tempest.sh volume

conformance-placement: install
	tests/peer/run-placement-gabbi.sh

bench: install
	$(BIN)/python bench/run.py

bench-placement: install
	$(BIN)/python bench/placement_vs_upstream.py
