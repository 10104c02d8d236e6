# Two entry points from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test lint zoo bench peers clean browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The runtime alone (no torch) is enough to run the shipped zoo; OpenVINO
# gives `auto` a second CPU backend to measure against ONNX Runtime.
$(VENV)/.runtime: $(VENV)/bin/python setup.py constraints.txt
	$(PIP) -e '.[openvino]'
	touch $@

$(VENV)/.full: $(VENV)/bin/python setup.py constraints.txt
	$(PIP) -e '.[train,dev]'
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/artforge demo --out out/demo

# The web page's test drives a real headless Chromium: Debian's chromium and
# chromium-driver, installed here when missing (as root; otherwise it says how).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium chromium-driver; \
	else echo "make test: the web page test needs Debian's chromium and chromium-driver and is skipped" \
	     "without them; install them with: sudo apt-get install -y chromium chromium-driver"; fi

# Lint and types first (seconds), then the suite.
test: $(VENV)/.full browser
	$(VENV)/bin/ruff check artforge tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: $(VENV)/.full
	$(VENV)/bin/ruff check artforge tests benchmarks
	$(VENV)/bin/mypy

zoo: $(VENV)/.full
	$(VENV)/bin/artforge zoo build

# The whole benchmark suite (about 15 minutes on 2 cores); writes benchmarks/RESULTS.md and plots.
bench: $(VENV)/.full
	$(PIP) -e '.[train,dev,bench]'
	$(PY) benchmarks/bench_suite.py

# The peers benchmarks/bench_peers.py compares the server with (TorchServe in its own venv, perf_analyzer);
# idempotent. PEERS_VENV defaults to ../peers-venv beside the checkout, never $(VENV).
peers:
	bash benchmarks/setup_peers.sh $(PEERS_VENV)

clean:
	rm -rf $(VENV) out
