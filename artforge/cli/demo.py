"""`artforge demo`: every model of a repository (the shipped zoo by default) on the bundled sample photos."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from artforge.cli.args import DEFAULT_ZOO, add_backend, add_command, add_repository, open_repository
from artforge.defaults import QUALITY

SAMPLES = DEFAULT_ZOO / "samples"
#: images each generator draws for its grid, and the grid's columns
_GENERATED, _COLUMNS = 16, 4


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "demo", "run every model of the shipped zoo (or --repo) on the sample photos",
                         run_demo)
    add_repository(parser)
    parser.add_argument("--out", type=Path, default=Path("out/demo"), metavar="DIR",
                        help="folder for the stylized photos, the classifications and the generated grids")
    add_backend(parser)


def run_demo(args: argparse.Namespace) -> int:
    """Every model on the bundled photos: stylize, classify (photos and stylized), generate."""
    from artforge.batch.driver import run_stylize
    from artforge.batch.local import LocalExecutor
    from artforge.batch.options import BatchOptions
    from artforge.runtime import write_image
    from artforge.runtime.grid import tile_grid

    repo = open_repository(args)
    out: Path = args.out
    started = time.perf_counter()
    names = {kind: repo.names_of_kind(kind) for kind in ("classifier", "generator", "stylizer")}
    stylizers = [repo.stylizer(name, backend=args.backend) for name in names["stylizer"]]
    summary = run_stylize(LocalExecutor(stylizers), SAMPLES, out / "stylized",
                          BatchOptions(fmt="jpg", quality=QUALITY), progress=False, per_model=True)
    print(f"stylized {summary.done} images with {', '.join(names['stylizer'])} -> {out / 'stylized'}")
    lines = []
    for name in names["classifier"]:
        classifier = repo.classifier(name, backend=args.backend)
        for image in sorted(SAMPLES.iterdir()) + summary.outputs:
            (label, score), = classifier.classify(image, top_k=1)
            lines.append(f"{name}: {image.relative_to(image.parents[1])} -> {label} ({score:.2f})")
    (out / "classification.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(f"  {line}" for line in lines))
    for name in names["generator"]:
        generator = repo.generator(name, backend=args.backend)
        target = out / "generated" / f"{name}.png"
        write_image(target, tile_grid(generator.generate(_GENERATED, seed=0), columns=_COLUMNS))
        print(f"generated {_GENERATED} images with {name} -> {target}")
    print(f"demo done in {time.perf_counter() - started:.1f} s; results in {out.resolve()}")
    return 1 if summary.failed else 0
