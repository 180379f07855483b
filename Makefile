# Two commands after `git clone`: `make demo` (score a sample month end to end) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE := tools/azurite
MONTH ?= 202610

.PHONY: setup demo test airflow-ui clean

setup: $(VENV)/.installed $(AZURITE)/node_modules/.installed

# One pip install for everything, so the resolver sees all pins at once.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "==> Python packages into $(VENV) (first time: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
		| { grep -v "^WARNING: Location '" || true; }
	touch $@

$(AZURITE)/node_modules/.installed: $(AZURITE)/package.json $(AZURITE)/package-lock.json
	@echo "==> Azurite from npm into $(AZURITE)/node_modules"
	cd $(AZURITE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m devstack.demo --month $(MONTH)

test: setup
	$(PY) -m pytest

clean:
	rm -rf .state .airflow demo-output
