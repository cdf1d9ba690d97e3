# Two set-up commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --no-compile: Python writes the bytecode of what it imports on first use; compiling every file of
# torch and the rest at install time costs about a minute for modules no run imports.
PIP := $(BIN)/pip install -q --no-compile -c constraints.txt
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
# Two workers on the 2-core machines this project targets; the root conftest.py decides which worker
# runs what (a module's tests together, so its module fixtures are built once; tests/e2e one by one).
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: demo test install install-test system-deps

# The one shared install step: system libraries first (scripts/system-deps.sh), then the packages.
# pip runs only when the venv is new or an input below changed (a stamp in the venv records the last
# install), so a second `make demo` or `make test` starts at once; the installs are editable, so
# edited sources need no reinstall. The build backend is installed into the venv first and the
# packages build with it (--no-build-isolation): a fresh build environment per package costs
# ~75 s even when nothing changed.
INSTALL_INPUTS := Makefile constraints.txt specforge-core/pyproject.toml $(wildcard plugins/*/pyproject.toml) \
	tests/fixtures/specforge-example/pyproject.toml
BUILD_BACKEND := hatchling editables

system-deps:
	@scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(INSTALL_INPUTS) | $(BIN)/python
	$(PIP) $(BUILD_BACKEND)
	$(PIP) --no-build-isolation $(PACKAGES)
	@touch $@

# The test install is a superset of the demo's, so it stamps both.
$(VENV)/.installed-test: $(INSTALL_INPUTS) | $(BIN)/python
	$(PIP) $(BUILD_BACKEND)
	$(PIP) --no-build-isolation $(TEST_PACKAGES)
	@touch $@ $(VENV)/.installed

install: system-deps $(VENV)/.installed

install-test: system-deps $(VENV)/.installed-test

demo: install
	$(BIN)/specforge run $(DEMO_ARGS)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
