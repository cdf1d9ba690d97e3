# Two set-up commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
# Every package of this repository, in one pip command (none of them is on PyPI).
PACKAGES := -e specforge-core[train,report] \
	-e plugins/specforge-eagle3 -e plugins/specforge-dflash -e plugins/specforge-domino \
	-e plugins/specforge-peagle -e plugins/specforge-dspark -e plugins/specforge-mooncake -e plugins/specforge-sglang \
	-e plugins/specforge-wandb
TEST_PACKAGES := -e specforge-core[train,report,tensorboard,test] \
	-e plugins/specforge-eagle3 -e plugins/specforge-dflash -e plugins/specforge-domino \
	-e plugins/specforge-peagle -e plugins/specforge-dspark -e plugins/specforge-mooncake -e plugins/specforge-sglang \
	-e plugins/specforge-wandb -e tests/fixtures/specforge-example
DEMO_ARGS ?= --strategy eagle3
# Two workers on the 2-core machines this project targets. xdist_group marks have no effect under
# pytest 9.2 (xdist sets a node id attribute pytest no longer reads): a fixture too costly to build
# once per worker belongs to a single test.
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: demo test install install-test system-deps

# The one shared install step: system libraries first (scripts/system-deps.sh), then the packages.
system-deps:
	@scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: system-deps $(BIN)/python
	$(PIP) $(PACKAGES)

install-test: system-deps $(BIN)/python
	$(PIP) $(TEST_PACKAGES)

demo: install
	$(BIN)/specforge run $(DEMO_ARGS)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
