# switchboard: `make run` starts the daemon on the embedded default config,
# `make test` runs the whole suite (lint, types, tests).
VENV    ?= .venv
PYTHON  ?= python3
CONFIG  ?= config/switchboard.yaml
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test lint check coverage-core screenshots bench bench-full demo clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@$(BIN)/switchboard check -c $(CONFIG)
	@echo ""
	@echo "switchboard is starting on http://127.0.0.1:8650 (Ctrl-C stops it)."
	@echo "From a second terminal:"
	@echo "  export SWITCHBOARD_TOKEN_FILE=$(CURDIR)/var/tokens/admin.token"
	@echo "  $(BIN)/switchboard status"
	@echo "  $(BIN)/switchboard post schedule --channel outbox --at +1m --text 'Hello'"
	@echo "  tail -f var/outbox.jsonl"
	@echo ""
	exec $(BIN)/switchboard run -c $(CONFIG)

check: $(STAMP)
	$(BIN)/switchboard check -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check switchboard tests $(wildcard bench demo)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Line coverage of the publisher, incidents, steps and gate by tests/core alone.
coverage-core: $(STAMP)
	$(BIN)/python -m tests.core.measure

# Rewrites the committed docs/console/*.png; a plain test run leaves them alone.
screenshots: $(STAMP)
	SWITCHBOARD_REFRESH_SCREENSHOTS=1 $(BIN)/pytest -q tests/console/test_console_story.py

bench: $(STAMP)
	$(BIN)/python -m bench --quick

bench-full: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/python demo/eurostar.py

clean:
	rm -rf var build *.egg-info .mypy_cache .ruff_cache .pytest_cache
