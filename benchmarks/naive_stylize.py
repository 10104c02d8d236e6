"""The script users write before they have a tool: walk a folder, and for each
image read it with PIL, run the PyTorch model, save with PIL. One image at a
time, no overlap. The end-to-end benchmark times `artforge stylize` against it.

    python benchmarks/naive_stylize.py CHECKPOINT IN_FOLDER OUT_FOLDER
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artforge.export.onnx_export import load_run


def main() -> None:
    checkpoint, source, target = (Path(a) for a in sys.argv[1:4])
    model = load_run(checkpoint).wrapper  # the trained network behind uint8 NHWC in/out
    for path in sorted(source.rglob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        # the network needs sides that are multiples of 4
        padded = np.pad(image, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
        with torch.inference_mode():
            out = model(torch.from_numpy(padded)[None])[0, :h, :w].numpy()
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(dest, quality=90)


if __name__ == "__main__":
    main()
