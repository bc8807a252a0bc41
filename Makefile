# One entry point for setting up, running, checking and testing the service.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install install-dev assets browser clients bench-tools run migrate test check format bench bench-mixed soak clean

help:
	@echo "make run     - set up everything and start the service on http://$(HOST):$(PORT) (SQLite)"
	@echo "make test    - set up everything and run the whole test suite"
	@echo "make check   - ruff (format + lint) and mypy"
	@echo "make bench   - the benchmark (bench/), prints a table and writes JSON"
	@echo "make bench-mixed - only single-sample latency under mixed load with the jobs running"
	@echo "make migrate - apply database migrations to DATABASE_URL"
	@echo "make dist    - build the wheel (with its front-end assets) and the sdist into dist/"

$(VENV)/.stamp-runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-runtime requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.stamp-runtime assets
install-dev: $(VENV)/.stamp-dev assets

# Front-end libraries (Chart.js; Swagger UI and ReDoc for /docs and /redoc) come from the npm
# registry, pinned by package-lock.json; no install scripts run (.npmrc).
node_modules/.stamp-npm: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error --ignore-scripts
	touch $@

assets: node_modules/.stamp-npm

# Debian's Chromium for the browser tests (installed when missing and we are root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's 'chromium' package for the browser tests"; fi; }

# The outside servers and clients the tests run against, from Debian's packages (installed when
# missing and we are root): Prometheus 2.42 and promtool, node_exporter, VictoriaMetrics 1.79.5
# (victoria-metrics, vmagent, vmalert, vmctl), the InfluxDB 1.6 CLI and Alertmanager. The tests
# start each on 127.0.0.1 with a free port and a temporary directory; none runs as a service.
CLIENT_PACKAGES := prometheus prometheus-node-exporter victoria-metrics influxdb-client prometheus-alertmanager
CLIENT_COMMANDS := prometheus promtool prometheus-node-exporter victoria-metrics vmagent vmalert vmctl influx prometheus-alertmanager
clients:
	@missing=""; for c in $(CLIENT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CLIENT_PACKAGES) >/dev/null; \
	  else echo "some test clients are missing: install Debian's $(CLIENT_PACKAGES)"; fi; fi

migrate: install
	$(PY) -m app.migrate

run: install
	$(PY) -m uvicorn app.main:app --host $(HOST) --port $(PORT)

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per process at a time so
# that its module-wide servers and databases are set up once; TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
test: install-dev browser clients
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

check: install-dev
	$(VENV)/bin/ruff format --check app tests bench scripts hatch_build.py
	$(VENV)/bin/ruff check app tests bench scripts hatch_build.py
	$(VENV)/bin/mypy

format: install-dev
	$(VENV)/bin/ruff format app tests bench scripts hatch_build.py
	$(VENV)/bin/ruff check --fix app tests bench scripts hatch_build.py

# wrk drives the single-sample load in the benchmark (Debian's package, installed when missing).
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
	  else echo "wrk is missing: install Debian's 'wrk' package for the benchmark"; fi; }

bench: install-dev clients bench-tools
	$(PY) -m bench.run $(BENCH_ARGS)

# Single-sample latency while the rollup and retention jobs run (bench/mixed_load.py, also part of
# `make bench`): BENCH_ARGS="--seconds 60 --backends sqlite,postgresql".
bench-mixed: install-dev
	$(PY) -m bench.mixed_load $(BENCH_ARGS)

soak: install-dev
	$(PY) -m pytest -m slow tests/soak $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules dist .pytest_cache .mypy_cache .ruff_cache

# ---- packaging and the README's examples
.PHONY: dist readme-examples

# The wheel and sdist in dist/: the `app` package, its front-end assets from node_modules
# (hatch_build.py), the `metrics-service` command. `pip install dist/*.whl` needs no Node.js.
dist: install-dev assets
	rm -rf dist
	$(PY) -m hatchling build -d dist

# Runs the README's API examples in order against a fresh server and rewrites the answers shown
# under them; `make readme-examples ARGS=--check` only compares and prints the differences.
readme-examples: install
	$(PY) scripts/readme_examples.py $(ARGS)
