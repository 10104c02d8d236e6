# Two entry points from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test lint zoo bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The runtime alone (no torch) is enough to run the shipped zoo.
$(VENV)/.runtime: $(VENV)/bin/python setup.py constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.full: $(VENV)/bin/python setup.py constraints.txt
	$(PIP) -e '.[train,dev]'
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/artforge demo --out out/demo

test: $(VENV)/.full
	$(PY) -m pytest -q

lint: $(VENV)/.full
	$(VENV)/bin/ruff check artforge tests benchmarks

zoo: $(VENV)/.full
	$(VENV)/bin/artforge zoo build

bench: $(VENV)/.full
	$(PY) benchmarks/bench_runtime.py

clean:
	rm -rf $(VENV) out
