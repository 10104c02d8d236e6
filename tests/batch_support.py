"""What the batch tool's test modules share: the shipped zoo's samples, real photos, the CLI in-process."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from artforge.cli import main
from artforge.cli.args import DEFAULT_ZOO

ZOO_REPO = DEFAULT_ZOO / "repository"
SAMPLES = sorted((DEFAULT_ZOO / "samples").glob("*.jpg"))
#: files a run keeps in OUT besides its outputs
BOOKKEEPING = {"stylize-manifest.json", "stylize-report.json", ".artforge.lock"}


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """`artforge ARGV` in this process: (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def photo(width: int, height: int, index: int = 0) -> np.ndarray:
    """A real photo (BGR), cropped differently per index so that every file differs."""
    image = cv2.imread(str(SAMPLES[index % len(SAMPLES)]))
    dy, dx = (index * 7) % 40, (index * 13) % 60
    return cv2.resize(image[dy:, dx:], (width, height), interpolation=cv2.INTER_AREA)
