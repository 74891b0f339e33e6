# Every target bootstraps .venv from nothing, so a fresh clone needs only python3 (>= 3.10).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv test test-floor lint demo bench bench-quick emulator clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[emulator,test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# Prove the declared floor (apache-airflow>=3.0): builds .venv-floor with Airflow 3.0.6 and runs the
# unit, integration and floor tests on it (see .ci/floor for the two pins 3.0.6 needs).
test-floor:
	bash .ci/floor $(PYTEST_ARGS)

emulator: $(STAMP)
	$(VENV)/bin/airflow-mps-emulator

clean:
	rm -rf $(VENV) .venv-floor .pytest_cache .ruff_cache .demo

demo: $(STAMP)
	$(PY) demo/run_demo.py

BENCH_ARGS ?=

# Measured, never asserted: writes benchmarks/results/latest.{json,md} and prints the table.
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick $(BENCH_ARGS)
