# Two set-up commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --no-compile, then COMPILE below: pip compiles one file after another (about a minute for torch and
# the rest); compileall on every core does the same in ~20 s. The bytecode must be written at install:
# where PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines) Python never writes it on
# import, and every process then recompiles transformers, sympy and torch._dynamo from source (a run's
# imports took 8 s of CPU instead of 4.7 s; the test suite starts ~300 such processes).
PIP := $(BIN)/pip install -q --no-compile -c constraints.txt
# -qq and no exit status: a file that does not compile (torch ships a Python 3.12-only test helper)
# fails the same way on import, so only the bytecode of that file is missing.
COMPILE = $(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
	specforge-core/src plugins/*/src || true
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
	@$(COMPILE)
	@touch $@

# The test install is a superset of the demo's, so it stamps both.
$(VENV)/.installed-test: $(INSTALL_INPUTS) | $(BIN)/python
	$(PIP) $(BUILD_BACKEND)
	$(PIP) --no-build-isolation $(TEST_PACKAGES)
	@$(COMPILE)
	@touch $@ $(VENV)/.installed

install: system-deps $(VENV)/.installed

install-test: system-deps $(VENV)/.installed-test

demo: install
	$(BIN)/specforge run $(DEMO_ARGS)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
