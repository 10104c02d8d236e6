"""A production install has no torch: the runtime must never import it (nor onnx)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from onnx_builders import standard_repository

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from artforge.runtime import Repository, encode_image

    repo = Repository(sys.argv[1])
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    assert repo.load("colours", threads=1).classify(encode_image(red), top_k=1)[0][0] == "red"
    assert repo.load("dreams", threads=1).generate(2, seed=0)[1].shape == (4, 4, 3)
    assert (repo.load("invert", threads=1).stylize(red) == 255 - red).all()
    assert len(repo.describe()) == 3
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("torch", "onnx", "torchvision")
                   or m.startswith(("artforge.training", "artforge.zoo", "artforge.export", "artforge.models",
                                    "artforge.quality")))
    print("imported:", heavy)
    sys.exit(1 if heavy else 0)
""")


def test_runtime_runs_all_kinds_without_torch(tmp_path: Path) -> None:
    repo = standard_repository(tmp_path)
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(repo)], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported: []" in result.stdout
