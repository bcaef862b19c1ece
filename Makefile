# The two commands a newcomer runs: `make demo` and `make test` (`make help` lists the rest).
# Both create (and then reuse) a local virtual environment in .venv. `make demo` installs
# only what the demo needs; every other target installs the full dev extra.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install, each redone when pyproject.toml changes.
DEMO_STAMP := $(VENV)/.demo-installed
DEV_STAMP := $(VENV)/.dev-installed
# examples/demo.py runs examples/fastapi_app.py under uvicorn.
DEMO_EXTRAS := fastapi
DEMO_REQUIREMENTS := uvicorn>=0.30
LINTED := src tests examples benchmarks
# Debian's programs some tests run for real, as "program=package": the browser test
# (tests/e2e) drives Chromium through its chromedriver; the DPoP replay-store tests start
# their own redis-server on loopback.
SYSTEM_PROGRAMS := /usr/bin/chromium=chromium /usr/bin/chromedriver=chromium-driver \
	/usr/bin/redis-server=redis-server

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck unit browser packages docs fuzz bench dist clean

help: ## list the targets
	@echo "make TARGET, where TARGET is one of:"
	@awk -F ':.*## ' '/^[a-z]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(DEV_STAMP) ] && [ $(DEV_STAMP) -nt pyproject.toml ]; then \
		echo "the dev extra is installed: it covers the demo"; \
	else \
		$(BIN)/python -m pip install --quiet -e '.[$(DEMO_EXTRAS)]' '$(DEMO_REQUIREMENTS)'; \
	fi
	@touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(DEMO_STAMP) ## fake issuer + protected example API + callers: 200 / 401 / 403
	$(BIN)/python examples/demo.py

test: lint typecheck unit ## what CI runs: lint, typecheck, then the tests with coverage

lint: $(DEV_STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(DEV_STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(DEV_STAMP) packages ## the whole test suite with branch coverage
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

browser: $(DEV_STAMP) packages ## the browser tests alone: Swagger UI in headless Chromium
	$(BIN)/pytest tests/e2e

# Like benchmarks/setup.sh for wrk: quiet when installed; as root with apt-get, installs
# the missing Debian packages; elsewhere says so, and the tests needing them skip.
packages: ## install Debian's chromium, chromium-driver, redis-server if missing (root)
	@missing=""; for pair in $(SYSTEM_PROGRAMS); do \
		[ -x "$${pair%%=*}" ] || missing="$$missing $${pair#*=}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's$$missing for the tests that run them"; \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing >/dev/null; \
	else \
		echo "missing Debian's$$missing and no way to install them here (root, apt-get):" \
			"the tests that run them skip"; \
	fi

docs: $(DEV_STAMP) ## build the documentation site strictly into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

fuzz: $(DEV_STAMP) ## a longer property-based campaign
	HYPOTHESIS_PROFILE=campaign $(BIN)/pytest tests/security -k fuzz

bench: $(DEV_STAMP) ## the benchmarks, side by side with a plain PyJWT baseline
	$(BIN)/python benchmarks/run.py

dist: $(DEV_STAMP) ## build the sdist and the wheel into dist/ (offline, with .venv's setuptools)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	@ls dist

clean: ## remove .venv, caches, coverage data, site/ and dist/
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage htmlcov site build dist
