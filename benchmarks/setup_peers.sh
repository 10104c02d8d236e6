#!/usr/bin/env bash
# Install the peers benchmarks/bench_peers.py compares `artforge serve` with:
# TorchServe (in a venv of its own, with its own torch) and Triton's perf_analyzer.
#
#   bash benchmarks/setup_peers.sh [VENV]      # default: $ARTFORGE_PEERS_VENV, else ../peers-venv beside the checkout
#   make peers                                  # the same
#
# Safe to rerun: each step checks first and does nothing when its part is in place.
#
# - Debian: openjdk-17-jre-headless (TorchServe's frontend is Java) and libb64-0d (perf_analyzer links it).
#   Installed with apt-get as root (or through sudo); otherwise the script says what to install and stops.
# - A separate venv, never the project's .venv: torch==2.13.0 (the CPU build the project pins; any other
#   version pulls gigabytes), torchserve, torch-model-archiver, pyyaml (TorchServe needs it but does not
#   declare it: without it the worker restarts in a loop with "No module named 'yaml'"), onnxruntime (its
#   ONNX path), pillow, and nvidia-cuda-runtime-cu12, whose lib/ folder holds the libcudart.so.12 that
#   perf_analyzer loads even without a GPU.
# - perf_analyzer: the binary inside the tritonclient wheel; the project's venv has it (the [dev] extra),
#   and the peers venv gets the same wheel so that the benchmark finds one either way.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${ARTFORGE_PEERS_VENV:-$(dirname "$ROOT")/peers-venv}}"
PYTHON="${PYTHON:-python3.11}"
# The versions measured on this project's machines (see docs/serving.md, "Against TorchServe").
PEER_PACKAGES=(torch==2.13.0 torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml onnxruntime pillow numpy
               psutil nvidia-cuda-runtime-cu12 tritonclient==2.41.0)

say() { echo "setup_peers: $*"; }

# -- Debian packages ------------------------------------------------------------------------------
missing=()
for package in openjdk-17-jre-headless libb64-0d; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null; then apt=(sudo apt-get);
  else say "install ${missing[*]} (Debian packages) as root, then rerun"; exit 1; fi
  say "installing ${missing[*]}"
  "${apt[@]}" install -y "${missing[@]}" || { "${apt[@]}" update && "${apt[@]}" install -y "${missing[@]}"; }
else
  say "Debian packages present (openjdk-17-jre-headless, libb64-0d)"
fi

# -- the peers venv -------------------------------------------------------------------------------
case "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")" in
  "$ROOT/.venv") say "refusing to install TorchServe and its torch into the project's venv ($VENV)"; exit 1 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
want = {"torch": "2.13.0", "torchserve": "0.12.0", "torch-model-archiver": "0.12.0", "tritonclient": "2.41.0"}
for name in ("pyyaml", "onnxruntime", "pillow", "numpy", "psutil", "nvidia-cuda-runtime-cu12"):
    md.version(name)
sys.exit(any(not md.version(name).startswith(version) for name, version in want.items()))
EOF
then
  say "peers venv $VENV has its packages"
else
  say "installing ${PEER_PACKAGES[*]} into $VENV"
  "$VENV/bin/python" -m pip install -q "${PEER_PACKAGES[@]}"
fi

# -- check ----------------------------------------------------------------------------------------
CUDART="$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], "lib"))')"
PERF="$ROOT/.venv/bin/perf_analyzer"
[ -x "$PERF" ] || PERF="$VENV/bin/perf_analyzer"
LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PERF" --version >/dev/null 2>&1 \
  || { say "$PERF does not start even with $CUDART on LD_LIBRARY_PATH"; exit 1; }
java -version >/dev/null 2>&1 || { say "java does not start"; exit 1; }
"$VENV/bin/torchserve" --version >/dev/null 2>&1 || { say "$VENV/bin/torchserve does not start"; exit 1; }
say "ready: torchserve $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torchserve"))'),"\
" perf_analyzer $PERF (LD_LIBRARY_PATH += $CUDART)"
say "run: ARTFORGE_PEERS_VENV=$VENV python benchmarks/bench_peers.py"
