# Two entry points for a fresh clone (see README "Quick start").
#   make demo   set up .venv, run `scripts.reproduce --preset=demo` (all four areas,
#               embedded data, <= 10 min on 2 CPU cores) and print its summary table
#   make test   set up .venv, run ruff and the whole pytest suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/demo

.PHONY: setup demo classifier test lint clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m scripts.reproduce \
		--preset=demo --workdir=$(WORKDIR)

classifier: setup
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m scripts.train \
		--config=shared/configs/mnist_classifier.py:quick --workdir=workdirs/classifier

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile tests

clean:
	rm -rf $(VENV) workdirs .pytest_cache
