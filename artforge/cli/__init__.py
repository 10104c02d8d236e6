"""The `artforge` command: art models from PyTorch training to production inference.

One module per command group, each adding its sub-commands over the shared
argument groups of args.py:

    runtime   models, classify, generate      stylize   stylize
    serve     serve                           demo      demo
    train     train classifier|dcgan|style    export    export, quantize, build-engine
    gatys     gatys                           zoo       zoo build
    meta_style  train meta-style, adapt-style

Building the parser imports nothing heavy: torch, onnx, OpenCV, ONNX Runtime
and grpc are imported inside the function that runs a command, so
`artforge --help` answers at once and runtime commands never load torch.

Exit status: 0 done; 1 some inputs failed (each named on stderr); 2 a
mistake in the command (one sentence, or argparse's usage line and one
sentence); 130 Ctrl-C; 141 stdout closed early (`artforge models | head -1`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from artforge import __version__
from artforge.cli import demo, export, gatys, meta_style, runtime, serve, stylize, train, zoo
from artforge.cli.args import HelpFormatter, Parser, add_subcommands
from artforge.errors import ArtforgeError

#: command groups in the order `artforge --help` lists their commands
COMMAND_GROUPS = (runtime, stylize, serve, demo, train, meta_style, gatys, export, zoo)
#: what a shell reports for a process ended by SIGPIPE (128 + 13)
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="artforge", description="Art models from PyTorch training to production inference.",
                    epilog="Run 'artforge COMMAND --help' for a command's options.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"artforge {__version__}",
                        help="print artforge's version and exit")
    commands = add_subcommands(parser, "command", "COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `artforge` command line; returns the exit status (argparse exits 2 itself on a bad one)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except (ArtforgeError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"artforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do. Python would flush
        # stdout again at exit and print a traceback, so it now points at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
