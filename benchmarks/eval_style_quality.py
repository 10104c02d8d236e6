"""Style quality of the zoo's style networks, before and after a retraining, by
network-free metrics (artforge/quality/style_metrics.py) on held-out photos.

"Before" is a model repository (default: the shipped zoo/repository); "after"
is another repository or training runs (`--run swirl=RUN_DIR`, exported to a
temporary repository first). Each style network stylizes the centre square of
the held-out photos (artforge.zoo.datasets.DEFAULT_HOLDOUT) through the
runtime, and is scored against its style image (zoo/styles/<style>.jpg at the
size it was trained with) and the photo, by artforge.zoo.evaluation, the same
code the zoo build writes into the model cards.

    python benchmarks/eval_style_quality.py [--after REPO | --run NAME=RUN ...] [--styles mosaic,swirl]

Writes the `style-quality` section of benchmarks/RESULTS.md and the contact
sheet benchmarks/plots/style_quality.jpg (rows: photos; columns: for each
style, its style image, then before and after).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.runtime import Repository, read_image, write_image  # noqa: E402
from artforge.runtime.grid import tile_grid  # noqa: E402
from artforge.zoo.catalog import ZOO  # noqa: E402
from artforge.zoo.datasets import DEFAULT_HOLDOUT  # noqa: E402
from artforge.zoo.evaluation import centre_square, evaluate_stylizer  # noqa: E402
from artforge.zoo.photos import source_photos  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHEET = ROOT / "benchmarks" / "plots" / "style_quality.jpg"


def _row(label: str, q: dict) -> str:
    m = q["mean"]
    return f"| {label} | {m['colour']:.2f} | {m['texture']:.3f} | {m['edges']:.3f} |"


def _settings(repo: Path, name: str) -> str:
    prov = Repository(repo).stylizer(name).metadata.provenance
    options = prov.get("loss_options", {"smoothing": "none"})
    weights = prov.get("weights", {})
    return (f"{prov.get('steps')} steps, {options.get('style_match', 'gram')} loss, "
            f"style weight {weights.get('style')}, smoothing {options.get('smoothing')}"
            + (f" T={options.get('temperature')}" if options.get("smoothing") == "softmax" else "")
            + (f", style sizes {options.get('style_sizes')}" if len(options.get("style_sizes", [])) > 1 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=ROOT / "zoo" / "repository", help="model repository")
    parser.add_argument("--after", type=Path, default=None, help="model repository with the retrained models")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN",
                        help="a training run folder of zoo style NAME, exported for the 'after' column")
    parser.add_argument("--styles", default=",".join(m.name for m in ZOO if m.kind == "style"))
    parser.add_argument("--style-dir", type=Path, default=ROOT / "zoo" / "styles")
    args = parser.parse_args()

    styles = [s for s in args.styles.split(",") if s]
    catalog = {m.name: m for m in ZOO}
    photos = {n: source_photos()[n] for n in DEFAULT_HOLDOUT}
    with tempfile.TemporaryDirectory() as tmp:
        after = args.after
        if args.run:
            from artforge.export import export_run
            after = Path(tmp) / "after"
            for item in args.run:
                name, _, run = item.partition("=")
                export_run(Path(run), after, name=name, version=1, log=None)
        lines = ["## Style quality of the zoo's style networks (network-free metrics, held-out photos)", "",
                 f"Command: `{command_line()}`  ", f"Machine: {machine()}", "",
                 f"Centre 256 px squares of {', '.join(photos)} stylized through the runtime; colour = sliced "
                 "Wasserstein distance to the style image's Lab colours, texture = Gabor filter-bank Gram distance "
                 "to the style image at its training size (both lower is closer), edges = edge-map SSIM to the "
                 "photo (higher keeps more of it). Means over the photos. Contact sheet: "
                 "`plots/style_quality.jpg` (rows: photos; per style: style image, before, after).", "",
                 "| model | colour ↓ | texture ↓ | edges ↑ |", "|---|---:|---:|---:|"]
        columns: list[list[np.ndarray]] = []
        for style in styles:
            style_path = args.style_dir / f"{catalog[style].style}.jpg"
            before = evaluate_stylizer(args.before, style, style_path, photos)
            lines.append(_row(f"{style}: photos unstylized", {"mean": before["unstylized"]}))
            lines.append(_row(f"{style} before ({_settings(args.before, style)})", before))
            repos = [args.before]
            if after is not None and (after / style).is_dir():
                result = evaluate_stylizer(after, style, style_path, photos)
                lines.append(_row(f"{style} after ({_settings(after, style)})", result))
                repos.append(after)
            columns.append([centre_square(read_image(style_path)[..., :3])] * len(photos))
            for repo in repos:
                model = Repository(repo).stylizer(style)
                columns.append([model.stylize(centre_square(p)) for p in photos.values()])
        cells = []
        for i, photo in enumerate(photos.values()):
            cells += [centre_square(photo)] + [column[i] for column in columns]
        write_image(SHEET, tile_grid(cells, columns=len(columns) + 1))
    write_section("style-quality", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
