# safescale: `make demo` runs the whole loop on the lab; `make test` installs and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRESET ?= demo
# Test processes (pytest-xdist): one per core; the lab's fixtures are built once and shared.
TEST_WORKERS ?= auto

.PHONY: install system test check bench demo clean

install: $(STAMP) system

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the local CPU build, so nothing pulls CUDA packages
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Debian packages the tests use for real: Chromium (HTML reports) and PostgreSQL (the ledger).
system:
	@bash scripts/install-system.sh

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

check: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/safescale demo --preset $(PRESET)

clean:
	rm -rf $(VENV) .safescale build dist .pytest_cache .mypy_cache .ruff_cache
