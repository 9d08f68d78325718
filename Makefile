# make install | run | test | smoke | lint | bench | cluster-demo       (README: "Two commands")
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HAYSTACK_TELEMETRY_ENABLED := False

.PHONY: install tools run test smoke lint bench cluster-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Serve the bundled examples with gunicorn (HAYHOOKS_WORKERS workers, default one per core) on
# HAYHOOKS_HOST:HAYHOOKS_PORT (default localhost:1416). The examples are copied into ./pipelines,
# the default pipelines directory, so deploys and edits never touch examples/.
run: install
	mkdir -p pipelines
	cp -rn examples/pipelines/. pipelines/
	$(BIN)/gunicorn -c gunicorn.conf.py

# What the tests need beyond the venv: nginx (tests/e2e/test_cluster.py), installed with apt-get when
# missing and running as root, else a clear error; the published Hayhooks in a scratch venv, whose CLI
# tests/e2e/test_uploads.py drives against our server (from the package registry).
tools:
	scripts/ensure-nginx.sh
	scripts/ensure-published-hayhooks.sh

test: install tools lint
	$(BIN)/pytest
	$(BIN)/python -m scripts.smoke

smoke: install
	$(BIN)/python -m scripts.smoke

# ruff, and the layer contracts of pyproject.toml [tool.importlinter] (README "Layout").
lint: install
	$(BIN)/ruff check hayhooks tests scripts benchmarks gunicorn.conf.py
	$(BIN)/ruff format --check hayhooks tests scripts benchmarks gunicorn.conf.py
	$(BIN)/lint-imports

bench: install
	$(BIN)/python benchmarks/run.py

# Two instances (2 workers each) over one pipelines directory behind nginx: deploy, status,
# kill one instance under load, restart it, undeploy; every step printed and checked.
cluster-demo: install tools
	$(BIN)/python -m scripts.cluster_demo
