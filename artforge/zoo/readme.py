"""What the zoo shows of itself: its README (models, data, accuracy) and the
contact sheet of the sample photos in every style."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artforge.files import write_bytes_atomic
from artforge.runtime import Repository, read_image, write_image
from artforge.runtime.grid import tile_grid
from artforge.zoo.catalog import ZOO


def _label(text: str, width: int) -> np.ndarray:
    """A white strip with `text` centred: a column heading."""
    strip = np.full((28, width, 3), 255, np.uint8)
    scale = min(0.6, 0.95 * width / max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0], 1))
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(strip, text, ((width - w) // 2, (28 + h) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                cv2.LINE_AA)
    return strip


def contact_sheet(repo: Path, samples: Path, stylizers: list[str], target: Path, side: int = 256,
                  references: dict[str, Callable[[str, np.ndarray], np.ndarray]] | None = None) -> Path:
    """Inputs (rows) x styles (columns), each cell a centre square of `side` pixels, under a row of headings.

    references: more columns, by heading, each a function (photo name, square photo) -> image: Gatys
    et al.'s optimisation beside the networks, say.
    """

    def square(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        s = min(h, w)
        crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)

    models = [Repository(repo).stylizer(name) for name in stylizers]
    references = references or {}
    cells = []
    for path in sorted(samples.glob("*.jpg")):
        photo = square(read_image(path)[..., :3])
        cells += [photo] + [model.stylize(photo) for model in models]
        cells += [square(make(path.stem, photo)) for make in references.values()]
    columns = 1 + len(models) + len(references)
    gap = 2  # tile_grid's
    grid = tile_grid(cells, columns=columns, gap=gap)
    strip = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(["photo", *stylizers, *references]):
        x = gap + i * (side + gap)
        strip[:, x:x + side] = _label(text, side)
    write_image(target, np.vstack([strip, grid]))
    return target


def write_index(out: Path, data_summary: dict[str, Any], evaluation: dict[str, Any] | None,
                style_quality: dict[str, dict[str, Any]] | None = None) -> None:
    """out/README.md: a table of the models that were built, where the data came from, the accuracy
    and the style networks' metrics (zoo/evaluation.py)."""
    repo = out / "repository"
    rows = []
    for model in ZOO:
        folder = repo / model.name
        files = list(folder.glob("*/model.onnx"))
        if not files:
            continue
        size = sum(f.stat().st_size for f in files) / 1e6
        what = {"classifier": "which zoo style (or none) made an image (EfficientNet-Lite0, fine-tuned, calibrated)",
                "dcgan": "DCGAN generator of abstract 64x64 tiles",
                "style": f"style network, style image `styles/{model.style}.jpg`",
                "adapt_style": "style network adapted in minutes from `checkpoints/meta_style.pt` (`artforge "
                               f"adapt-style`), style image `styles/{str(model.style).replace(':', '_')}.jpg`",
                }[model.kind]
        rows.append(f"| [{model.name}](repository/{model.name}/README.md) | {what} | {size:.1f} MB |")
    styles = data_summary.get("styles_dataset", {})
    tiles_file = out / "data_tiles.json"
    tiles = json.loads(tiles_file.read_text()) if tiles_file.is_file() else {}
    text = [
        "# The shipped default zoo", "",
        "Every model here was trained by this project from data it made itself from the photos that",
        "scikit-image and scikit-learn ship; nothing was downloaded. Rebuild it all with",
        "`artforge zoo build` (from the project root; about four hours on 2 idle CPU cores,",
        "215 min of it the DCGAN).", "",
        "| model | what | size |", "|---|---|---:|", *rows, "",
        "- `repository/`: Triton-layout model repository (`<name>/config.pbtxt`, `<name>/1/model.onnx`, "
        "model cards).",
        "- `checkpoints/`: the PyTorch weights each ONNX file was exported from (for benchmarks and fine-tuning), "
        "and `meta_style.pt`, the meta-learned style initialisation `artforge adapt-style` starts from.",
        "- `styles/`: the procedurally painted style images.",
        "- `samples/`: photos for the demo.", "",
        "## Data", "",
        f"- Art-style classifier data: crops of the source photos, unchanged (`photo`) and stylized by each zoo "
        f"stylizer ({', '.join(styles.get('classes', [])[1:])}) at random sizes; training photos "
        f"{', '.join(styles.get('train_photos', []))}; validation photos "
        f"{', '.join(styles.get('validation_photos', []))}; held-out photos "
        f"{', '.join(styles.get('held_out_photos', []))}.",
        f"- Style-network content images: {data_summary.get('content_images')} crops of the source photos.",
        f"- DCGAN tiles: {tiles.get('train', {}).get('tiles')} 64x64 crops (and "
        f"{tiles.get('test', {}).get('tiles')} held out) of procedural paintings "
        f"({', '.join(tiles.get('painted_styles', []))}), photo crops rendered "
        f"({', '.join(tiles.get('renderings', []))}) and stylized by {', '.join(tiles.get('stylizers', [])) or '-'}.",
        "",
    ]
    if evaluation:
        ece = f", expected calibration error {evaluation['ece']:.1%}" if "ece" in evaluation else ""
        text += [f"Art-style classifier top-1 accuracy on held-out photos: **{evaluation['accuracy']:.1%}** "
                 f"({evaluation['images']} images{ece}).", ""]
    for model in ZOO:
        scores_file = out / f"evaluation_{model.name}.json"
        if model.kind == "dcgan" and scores_file.is_file():
            scores = json.loads(scores_file.read_text())
            real = scores.get("training_images")
            scale = (f" For scale, {real['generated']} of its training tiles score Fréchet distance {real['fd']:.1f} "
                     f"and recall {real['recall']:.1%} against the same held-out tiles." if real else "")
            text += [f"{model.name} against held-out tiles: Fréchet distance **{scores['fd']:.1f}**, recall "
                     f"{scores['recall']:.1%}, near-duplicate pairs {scores['duplicates']:.2%} (real tiles: 1 %)."
                     + scale,
                     "", f"![{model.name} samples](generated/{model.name}.png)", ""]
    if style_quality:
        text += ["Style networks on held-out photos (network-free metrics, see each model card): colour = sliced "
                 "Wasserstein distance to the style image's colours in Lab, texture = Gabor Gram distance to it "
                 "(both lower is closer), edges = edge-map SSIM to the photo (higher keeps more).", "",
                 "| style | colour ↓ | texture ↓ | edges ↑ | photos unstylized: colour, texture |",
                 "|---|---:|---:|---:|---:|"]
        for name, q in style_quality.items():
            m, u = q["mean"], q["unstylized"]
            text.append(f"| {name} | {m['colour']:.2f} | {m['texture']:.3f} | {m['edges']:.3f} | "
                        f"{u['colour']:.2f}, {u['texture']:.3f} |")
        text.append("")
    text += ["![contact sheet](../docs/contact_sheet.png)", ""]
    write_bytes_atomic(out / "README.md", "\n".join(text).encode())
