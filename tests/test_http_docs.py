"""The curl examples of docs/serving.md's HTTP section, run as written against a server on the shipped zoo."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from serving_support import decode, running

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving.md"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def examples() -> list[str]:
    """The commands of the first sh block after the doc's '## HTTP' heading."""
    text = DOC.read_text()
    section = text[text.index("\n## HTTP\n"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_curl_examples_run_as_written(tmp_path: Path) -> None:
    (tmp_path / "zoo").symlink_to(ROOT / "zoo")  # the examples run from the repository's root
    with running(ROOT / "zoo" / "repository", http_port=0, backend="onnxruntime") as server:
        outputs = []
        for command in examples():
            command = command.replace("127.0.0.1:8000", f"127.0.0.1:{server.http_port}")
            result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                                    timeout=120)
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            outputs.append(result.stdout)
    out = tmp_path / "out" / "http"
    assert json.loads(outputs[0]) == {"ready": True}
    assert json.loads(outputs[1])["name"] == "art_style"
    assert len(json.loads(outputs[2])["labels"]) == 3
    assert decode((out / "mosaic.jpg").read_bytes()).shape[:2] == (300, 451)  # under max_side: full size
    assert decode((out / "swirl.jpg").read_bytes()).shape[2] == 3
    assert decode((out / "grid.png").read_bytes()).shape == (4 * 64 + 5 * 2, 4 * 64 + 5 * 2, 3)
    with zipfile.ZipFile(out / "four.zip") as archive:
        assert len(archive.namelist()) == 4
    assert {m["name"] for m in json.loads(outputs[7])["models"]} == {"abstract_dcgan", "art_style", "mosaic",
                                                                     "pointillism", "swirl"}
    inferred = json.loads((out / "infer.json").read_text())["outputs"][0]
    assert inferred["shape"] == [1, 64, 64, 3] and len(inferred["data"]) == 64 * 64 * 3
    assert outputs[-1].endswith(" 404\n") and "no model named 'nope'" in outputs[-1]
