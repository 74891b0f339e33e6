# Every target bootstraps .venv from nothing, so a fresh clone needs only python3 (>= 3.10).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv test test-floor test-distributed lint typecheck demo bench bench-quick emulator clean dist

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[emulator,test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with the configuration in pyproject.toml ([tool.mypy]); 0 errors is the bar.
typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)

# Prove the declared floor (apache-airflow>=3.0): builds .venv-floor with Airflow 3.0.6 and runs the
# unit, integration and floor tests on it (see .ci/floor for the two pins 3.0.6 needs).
test-floor:
	bash .ci/floor $(PYTEST_ARGS)

# The real-stack tests alone: LocalExecutor on SQLite and on PostgreSQL, CeleryExecutor with two workers
# (they also run in `make test`; they start their own PostgreSQL/Redis servers from Debian's packages).
test-distributed: $(STAMP)
	$(PY) -m pytest tests/reliability/stack -m slow -s $(PYTEST_ARGS)

emulator: $(STAMP)
	$(VENV)/bin/airflow-mps-emulator

clean:
	rm -rf $(VENV) .venv-floor .venv-sdk-floor .pytest_cache .ruff_cache .mypy_cache .demo

demo: $(STAMP)
	$(PY) demo/run_demo.py

BENCH_ARGS ?=

# Measured, never asserted: writes benchmarks/results/latest.{json,md} and prints the table.
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick $(BENCH_ARGS)

# Build the sdist + wheel into dist/ and check their metadata (twine), then prove the wheel stands on its
# own: a fresh virtualenv gets only the wheel (with the emulator extra; dependencies pinned to the
# versions .venv tests with) and `airflow providers list` there must show the provider. build and twine
# come from the `test` extra.
DIST_NAME := airflow-provider-tencentcloud-mps
dist: $(STAMP)
	rm -rf dist build
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	@set -e; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	wheel="$$(ls dist/*.whl)"; \
	$(PY) -m pip freeze --exclude-editable | grep -v -i -e '^$(DIST_NAME)=' -e ' @ ' > "$$tmp/constraints.txt"; \
	$(PY) -m venv --without-pip "$$tmp/venv"; \
	echo "installing $$wheel into a fresh virtualenv"; \
	$(PY) -m pip --python "$$tmp/venv/bin/python" install --quiet -c "$$tmp/constraints.txt" "$$wheel[emulator]"; \
	export AIRFLOW_HOME="$$tmp/home" AIRFLOW__CORE__LOAD_EXAMPLES=False; \
	"$$tmp/venv/bin/airflow" providers list -o json > "$$tmp/providers.json"; \
	"$$tmp/venv/bin/python" -c 'import json, sys; rows = [r for r in json.load(open(sys.argv[1])) if r["package_name"] == sys.argv[2]]; assert rows, f"{sys.argv[2]} missing from airflow providers list"; print("airflow providers list (fresh venv):", rows[0]["package_name"], rows[0]["version"])' "$$tmp/providers.json" "$(DIST_NAME)"; \
	"$$tmp/venv/bin/python" -c 'from airflow.providers_manager import ProvidersManager; info = ProvidersManager().providers["$(DIST_NAME)"]; print("documentation-url:", info.data["documentation-url"]); assert info.data["documentation-url"]'; \
	"$$tmp/venv/bin/airflow-mps-emulator" --help > /dev/null; \
	echo "dist OK: $$(ls dist | tr '\n' ' ')"

# Prove the declared Tencent SDK floors (tencentcloud-sdk-python-mps/-common[async], cos-python-sdk-v5):
# builds .venv-sdk-floor with exactly those versions and runs the hook and operator tests on it.
.PHONY: test-sdk-floor
test-sdk-floor:
	bash .ci/sdk-floor $(PYTEST_ARGS)
