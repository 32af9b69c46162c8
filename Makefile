# Every target works from a fresh clone: targets that need the virtualenv depend on its stamp.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The default model: a 15,000-row generated data set over 200 products, trained and compiled
# into a new bundle (PRODUCTS up to 1,000,000 and another DATA_DIR for a large catalog).
ROWS ?= 15000
SEED ?= 7
PRODUCTS ?= 200
DATA_DIR ?= data/default
VERSION ?= $(shell date -u +%Y%m%dT%H%M%SZ)
BUNDLE ?= artifacts/latest
HOST ?= 127.0.0.1
# The key training and the compiler sign bundles with, and the server checks them against:
# generated once per checkout (owner-only, never committed: artifacts/ is ignored).
BUNDLE_KEY ?= artifacts/.bundle-key
SIGNED := RECO_BUNDLE_KEY_FILE=$(BUNDLE_KEY)
# Extra flags for `make model`, e.g. COMPILE_ARGS="--target native" (see --help of each).
TRAIN_ARGS ?=
COMPILE_ARGS ?=
PORT ?= 50051

.PHONY: help setup protos data key model serve loadtest test unit lint format clean

help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## Create .venv and install the project (editable) with its extras

protos: $(STAMP)  ## Regenerate the committed gRPC stubs from protos/
	$(PY) scripts/gen_protos.py

$(DATA_DIR)/impressions.csv: | $(STAMP)
	$(PY) -m training generate --rows $(ROWS) --seed $(SEED) --products $(PRODUCTS) --out $(DATA_DIR)

data: $(DATA_DIR)/impressions.csv  ## Generate the default data set (if missing)

$(BUNDLE_KEY): | $(STAMP)
	$(PY) -m training keygen --out $(BUNDLE_KEY)

key: $(BUNDLE_KEY)  ## Create the bundle signing key (artifacts/.bundle-key) if missing

model: $(STAMP) $(DATA_DIR)/impressions.csv $(BUNDLE_KEY)  ## Train, compile and sign a new bundle; point artifacts/latest at it
	$(SIGNED) $(PY) -m training train --data $(DATA_DIR) --out artifacts/$(VERSION) $(TRAIN_ARGS)
	$(SIGNED) $(PY) -m compiler build artifacts/$(VERSION) $(COMPILE_ARGS)
	@# rename(2) is atomic: a server watching artifacts/latest never sees a half-made link
	ln -sfn $(VERSION) artifacts/.latest.tmp && mv -T artifacts/.latest.tmp artifacts/latest
	@echo "bundle ready: artifacts/$(VERSION) (artifacts/latest)"

serve: $(STAMP) $(BUNDLE_KEY)  ## Build the default bundle if missing, then serve it on $(HOST):$(PORT)
	@test -f $(BUNDLE)/manifest.json || $(MAKE) --no-print-directory model
	$(SIGNED) $(PY) -m server --bundle $(BUNDLE) --host $(HOST) --port $(PORT)

# Extra flags for `make loadtest`, e.g. LOADTEST_ARGS="--rate 500 --scenario score=8,track=1".
LOADTEST_ARGS ?=

loadtest: $(STAMP) $(BUNDLE_KEY)  ## Start the default server, send a 20 s open-loop load, print the SLO verdict
	@test -f $(BUNDLE)/manifest.json || $(MAKE) --no-print-directory model
	$(SIGNED) $(PY) -m loadtest --start-server --bundle $(BUNDLE) --duration 20 $(LOADTEST_ARGS)

.PHONY: bench demo loop
# `make loop`: the closed loop on simulated shoppers (README, "The loop"); LOOP_ARGS e.g.
# "--sessions-before 3000 --sessions-after 6000 --epsilon 0.3".
LOOP_DIR ?= reports/loop
LOOP_ARGS ?=

loop: $(STAMP) $(DATA_DIR)/impressions.csv $(BUNDLE_KEY)  ## Serve a context-free A with exploration to simulated shoppers, learn B from the log, OPE, hot-reload B beside A, A/B readout (report in reports/loop)
	rm -rf $(LOOP_DIR)
	$(SIGNED) $(PY) -m training train --data $(DATA_DIR) --out $(LOOP_DIR)/bundles/A-context-free --context-free
	$(SIGNED) $(PY) -m compiler build $(LOOP_DIR)/bundles/A-context-free
	$(SIGNED) $(PY) -m training loop --data $(DATA_DIR) --bundle-a $(LOOP_DIR)/bundles/A-context-free --out $(LOOP_DIR)/run $(LOOP_ARGS)
	@echo "report: $(LOOP_DIR)/run/report.md"

bench: $(STAMP) $(BUNDLE_KEY)  ## Model backends on fresh rows, then server latencies (builds the bundle if missing)
	@test -f $(BUNDLE)/manifest.json || $(MAKE) --no-print-directory model
	$(PY) -m compiler bench $(BUNDLE) $(BENCH_ARGS)
	$(SIGNED) $(PY) -m loadtest.serverbench --bundle $(BUNDLE) $(SERVERBENCH_ARGS)

demo: $(STAMP) $(BUNDLE_KEY)  ## Start a server, score a camping session, then play a shopper's story event by event
	@test -f $(BUNDLE)/manifest.json || $(MAKE) --no-print-directory model
	$(SIGNED) $(PY) scripts/demo.py --start-server --bundle $(BUNDLE)

lint: $(STAMP)  ## ruff (format + check), mypy and the import contracts (lint-imports)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)  ## Apply ruff's formatter and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: $(STAMP)  ## Unit tests only (fast)
	$(PY) -m pytest tests/unit -q

test: lint  ## Lint, then every test (unit and integration)
	$(PY) -m pytest -q

clean:  ## Remove generated data, bundles and caches (keeps .venv)
	rm -rf data artifacts reports .pytest_cache .mypy_cache .ruff_cache .hypothesis
