"""`artforge zoo build`: rebuild the shipped default model zoo (makes the data, trains, exports; slow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from artforge.cli.args import add_command, add_subcommands


def add_commands(commands: argparse._SubParsersAction) -> None:
    zoo = add_command(commands, "zoo", "rebuild the shipped default model zoo (trains every model; slow)", None)
    actions = add_subcommands(zoo, "zoo_command", "ACTION")
    parser = add_command(actions, "build", "make the data, train, export and document every zoo model", run_build)
    parser.add_argument("--out", type=Path, default=Path("zoo"), metavar="DIR", help="zoo folder to write")
    parser.add_argument("--work", type=Path, default=Path(".zoo-work"), metavar="DIR",
                        help="datasets and training runs (kept, so that a rerun resumes)")
    parser.add_argument("--sheet", type=Path, default=Path("docs/contact_sheet.png"),
                        help="contact sheet PNG of the samples in every style")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for testing the build itself")
    parser.add_argument("--only", default=None, metavar="NAME,...",
                        help="comma-separated subset of zoo models to (re)build (default: all)")


def run_build(args: argparse.Namespace) -> int:
    from artforge.zoo import build_zoo

    build_zoo(out=args.out, work=args.work, quick=args.quick, only=args.only, sheet=args.sheet)
    return 0
