"""Shared by the training tests: run a trainer in a subprocess and stop it with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from artforge.training import common

REPO = Path(__file__).resolve().parents[1]


def interrupt_training(module: str, config_class: str, config: object, out: Path) -> tuple[int, str]:
    """Start artforge.training.<module>.train(<config_class>(config)) in a subprocess, send SIGINT once it
    has saved a state in `out`, and return its exit code and stderr."""
    script = (f"import json, sys; from artforge.training.configs import {config_class}; "
              f"from artforge.training.{module} import train; "
              f"train({config_class}(**json.loads(sys.argv[1])))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(config.__dict__)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / common.STATE).exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "training never saved a state"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr
