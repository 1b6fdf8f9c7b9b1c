# lexray: `make demo` runs the whole pipeline offline; `make test` runs every test.
# Both set up what they need: a .venv, torch from this machine's disk, the package, the offline weights.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LEXRAY := $(VENV)/bin/lexray
# torch/torchvision versions that install from local disk here; any other version downloads gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.lexray-installed

.PHONY: setup models browser demo test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

models: setup
	$(LEXRAY) models install-offline

# Headless Chromium for the end-to-end web page test (Debian package; needs root or an existing install).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's 'chromium' package to run the browser test"; fi; }

demo: models
	$(LEXRAY) demo

test: models browser
	$(PY) -m pytest -m "not slow" -q
	$(PY) -m pytest -m slow -q

test-fast: setup
	$(PY) -m pytest -m "not slow" -q -x

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
