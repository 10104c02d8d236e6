"""`artforge stylize`: an image file or a folder tree, in-process, on a Ray cluster or through `--server`.

One batch driver (artforge/batch/driver.py) over the local, the Ray or the
remote executor: all plan the same outputs, resume the same way, write the same
JSON report and exit 1 if an image failed, 130 on Ctrl-C (see docs/batch.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from artforge import defaults
from artforge.batch.options import BATCH_MAX_PIXELS, DEFAULT_BATCH_SIZE, DEFAULT_TILE_ABOVE_MP
from artforge.cli.args import (
    add_backend,
    add_command,
    add_model_choice,
    add_output,
    add_repository,
    add_server_connection,
    connect,
    open_repository,
    pick_model,
)
from artforge.errors import InvalidInputError

if TYPE_CHECKING:
    from artforge.batch.executor import Executor
    from artforge.batch.options import BatchOptions

# runtime/tiling.py's DEFAULT_TILE, which --help cannot import without loading OpenCV and numpy.
_TILE = defaults.TILE


# Values are checked by the executor (LocalExecutor.check), which names the option in one sentence.
def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "stylize", "stylize an image file or a folder of images", run_stylize)
    parser.add_argument("input", type=Path, help="image file or folder (walked recursively)")
    parser.add_argument("output", type=Path, help="output file (for one input file) or folder")
    add_repository(parser)
    add_model_choice(parser, "stylizer", several=True)
    add_output(parser, formats=("jpg", "png", "webp"), default_format=None,
               format_text="output format (default: the output file's extension, else jpg)")
    parser.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="downscale inputs whose longer side exceeds this")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="same-size images per model call (see docs/batch.md)")
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="run images larger than SIZE in overlapping SIZE x SIZE tiles, blended seamlessly")
    parser.add_argument("--tile-overlap", type=int, default=None, metavar="PX",
                        help="overlap of neighbouring tiles (default: an eighth of the tile)")
    parser.add_argument("--tile-above", type=float, default=DEFAULT_TILE_ABOVE_MP, metavar="MP",
                        help=f"tile images over MP megapixels automatically, in {_TILE} px tiles unless --tile")
    parser.add_argument("--tile-stats", choices=defaults.TILE_STATS_MODES, default=defaults.TILE_STATS,
                        help="the tiles' normalisation statistics: estimate (from a downscale of the whole image) or "
                             "exact (measured through the tiles: matches an untiled run, ~15x the time; "
                             "docs/batch.md)")
    parser.add_argument("--max-pixels", type=float, default=BATCH_MAX_PIXELS / 1e6, metavar="MP",
                        help="refuse images over MP megapixels, before decoding them")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode and encode threads, each (default: half the cores, 1 to 4)")
    parser.add_argument("--force", action="store_true", help="redo every output, even those finished by an earlier run")
    parser.add_argument("--overwrite", action="store_true",
                        help="write over existing files in OUT that artforge stylize did not write "
                             "(never over an input)")
    parser.add_argument("--report", type=Path, default=None,
                        help="JSON report to write (default: OUTPUT/stylize-report.json when OUTPUT is a folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend(parser)
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="where the models run: local (this process) or ray (actors on a Ray cluster; "
                             "needs artforge[ray], see docs/batch.md)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="Ray cluster to join with --engine ray (default: start a local one with this "
                             "machine's cores)")
    add_server_connection(parser)


def run_stylize(args: argparse.Namespace) -> int:
    from artforge.batch.options import options_from_args

    options = options_from_args(args)
    if args.engine == "ray" and args.server:
        raise InvalidInputError("--engine ray and --server exclude each other: the server runs the models itself")
    if args.ray_address and args.engine != "ray":
        raise InvalidInputError("--ray-address needs --engine ray")
    if args.server:
        from artforge.batch.remote import RemoteExecutor

        with connect(args) as client:
            return _run(RemoteExecutor(client, args.model), args, options)
    from artforge.batch.local import LocalExecutor

    LocalExecutor.check(options)  # before any model loads
    repo = open_repository(args)
    names = [n.strip() for n in args.model.split(",") if n.strip()] if args.model else []
    names = names or [pick_model(repo, "stylizer", None)]
    if args.engine == "ray":
        from artforge.batch.cluster import RayExecutor

        with RayExecutor(repo.path, names, backend=args.backend, address=args.ray_address) as executor:
            return _run(executor, args, options)
    models = [repo.stylizer(name, backend=args.backend) for name in names]
    return _run(LocalExecutor(models), args, options)


def _run(executor: Executor, args: argparse.Namespace, options: BatchOptions) -> int:
    """Run the batch driver, print the summary; exit code 0 all done, 1 something failed, 130 interrupted."""
    from artforge.batch.driver import BatchInterrupted, run_stylize
    from artforge.batch.report import default_report_path

    report_path = args.report or default_report_path(args.input, args.output)
    try:
        report = run_stylize(executor, args.input, args.output, options, progress=not args.quiet,
                             report_path=report_path)
    except BatchInterrupted as interrupted:
        interrupted.report.print(report_path=report_path)
        print("artforge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    report.print(report_path=report_path)
    return 1 if report.failed else 0
