# Two entry points a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= var/ledger
WORKERS ?= 1

.PHONY: setup sysdeps run test lint bench fuzz clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,dev]'
	touch $@

setup: $(VENV)/.installed

# Debian's sqlite3 program: the SQLite export tests open the file with the real tool.
# wrk: the HTTP benchmark's load generator (C, so the load costs the 2 cores little).
sysdeps:
	@command -v sqlite3 >/dev/null && command -v wrk >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq sqlite3 wrk; }

run: setup
	$(VENV)/bin/cap-agent --data $(DATA) serve --workers $(WORKERS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup sysdeps lint
	$(PY) -m pytest -q -p no:cacheprovider

# Schemathesis against the live service with a fresh seed and more cases than CI's pinned run.
fuzz: setup
	CAP_FUZZ_SEED=random CAP_FUZZ_EXAMPLES=$${EXAMPLES:-200} $(PY) -m pytest -q -p no:cacheprovider tests/api/test_schemathesis.py

bench: setup
	for b in ops/bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
