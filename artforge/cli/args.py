"""What every `artforge` command shares: the parser class, the help format,
argument types, and the argument groups defined once (repository, model
selection, backend, server connection, output).

Plain Python: building the parser must not load OpenCV, ONNX Runtime, grpc
or torch, so anything heavy is imported where a command runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from artforge.defaults import CLIENT_RETRIES, CLIENT_TIMEOUT_S, QUALITY, TOKEN_ENV
from artforge.errors import ArtforgeError, InvalidInputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: the shipped zoo: its model repository and the sample photos `artforge demo` uses
DEFAULT_ZOO = PROJECT_ROOT / "zoo"
#: environment variable naming the repository of commands given no --repo
REPO_ENV = "ARTFORGE_REPO"

Run = Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------ parser and help
class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default after its help, unless the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and not action.required and "default" not in text
                and default is not None and default is not argparse.SUPPRESS and not isinstance(default, bool)):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
            text += f" (default: {shown})"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are reported by the command they belong to.

    argparse hands a sub-command's unknown options up to the top-level parser,
    which then prints `artforge`'s usage; here the sub-command refuses them
    itself, with its own usage line and one sentence (exit 2).
    """

    def parse_known_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)} (see '{self.prog} --help')")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        formatter = self._get_formatter()
        positionals = [formatter._format_args(action, action.dest) for action in self._get_positional_actions()]
        usage = " ".join([self.prog, "[options]", *positionals])
        self.exit(2, f"usage: {usage}\n{self.prog}: error: {message}\n")


def add_command(commands: argparse._SubParsersAction, name: str, summary: str, run: Run | None,
                description: str | None = None) -> Parser:
    """A sub-command parser; `run(args)` does the command and returns its exit status."""
    parser = commands.add_parser(name, help=summary, description=description or summary,
                                 formatter_class=HelpFormatter)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def add_subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str) -> argparse._SubParsersAction:
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=Parser)


# ----------------------------------------------------------------------- types
def _number(text: str, convert: Callable[[str], Any], what: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def non_negative_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port(text: str) -> int:
    value = _number(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0 = any free port), got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


# ------------------------------------------------------------------ repository
def default_repo() -> Path:
    """The shipped zoo's repository, unless $ARTFORGE_REPO points elsewhere."""
    return Path(os.environ.get(REPO_ENV, DEFAULT_ZOO / "repository"))


def add_repository(parser: argparse.ArgumentParser, text: str = "model repository folder") -> None:
    parser.add_argument("--repo", type=Path, default=None,
                        help=f"{text} (default: ${REPO_ENV}, else the shipped zoo's repository)")


def repository_path(args: argparse.Namespace) -> Path:
    return args.repo or default_repo()


def open_repository(args: argparse.Namespace) -> Any:
    """The runtime's Repository of --repo (imports ONNX Runtime and OpenCV)."""
    from artforge.runtime import Repository

    return Repository(repository_path(args))


def add_model_version(parser: argparse.ArgumentParser, text: str) -> None:
    """--version: a model's version number in a repository, the same type for every command."""
    parser.add_argument("--version", type=positive_int, default=None, metavar="N", help=text)


# -------------------------------------------------------------- model selection
def add_model_choice(parser: argparse.ArgumentParser, kind: str, several: bool = False) -> None:
    if several:
        parser.add_argument("--model", metavar="NAME[,NAME...]",
                            help=f"{kind} name(s), comma-separated (default: the repository's first {kind})")
    else:
        parser.add_argument("--model", metavar="NAME", help=f"{kind} name (default: the repository's first {kind})")


def pick_model(repo: Any, kind: str, name: str | None) -> str:
    """The named model, or the first model of the wanted kind in the repository."""
    if name:
        return name
    candidates = repo.names_of_kind(kind)
    if not candidates:
        raise ArtforgeError(f"repository {repo.path} has no {kind} model; pass --model or another --repo")
    return candidates[0]


# --------------------------------------------------------------------- backend
def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", metavar="NAME",
                        help="runtime backend: auto (the fastest candidate within the model's accuracy budget, "
                             "bf16 and int8/fp16 variants included, measured once per model; see `artforge budget`), "
                             "exact (the fastest fp32 backend), auto:bf16|fp16|int8, or a name: onnxruntime, "
                             "openvino:fp32, openvino:bf16, openvino:fp32@int8 (the model's int8 variant), ...")


# ----------------------------------------------------------- server connection
def add_server_connection(parser: argparse.ArgumentParser) -> None:
    """--server and how to reach it; without --server the command runs in-process."""
    group = parser.add_argument_group("server (instead of running in-process)")
    group.add_argument("--server", metavar="HOST:PORT", help="an artforge server to do the work")
    group.add_argument("--token", default=None,
                       help=f"bearer token for --server (default: ${TOKEN_ENV}; prefer the variable, command lines "
                            "are visible to other users)")
    group.add_argument("--timeout", type=positive_float, default=CLIENT_TIMEOUT_S, metavar="SECONDS",
                       help="seconds per call to --server, retries included")
    group.add_argument("--retries", type=non_negative_int, default=CLIENT_RETRIES,
                       help="retries while --server is unavailable")
    group.add_argument("--tls", action="store_true", help="connect to --server over TLS (system CA certificates)")
    group.add_argument("--tls-ca", type=Path, default=None, metavar="PEM",
                       help="connect over TLS, trusting the CA certificate(s) in this PEM file")


def connect(args: argparse.Namespace) -> Any:
    """An ImageClient for --server and the connection options (imports grpc)."""
    from artforge.serving.client import ImageClient

    if ":" not in args.server:
        raise InvalidInputError(f"--server must be HOST:PORT, e.g. 127.0.0.1:8001, got {args.server!r}")
    return ImageClient(args.server, token=args.token or os.environ.get(TOKEN_ENV) or None, timeout=args.timeout,
                       retries=args.retries, tls=args.tls, root_certificates=args.tls_ca)


# ---------------------------------------------------------------------- output
def add_output(parser: argparse.ArgumentParser, formats: Sequence[str], default_format: str | None,
               format_text: str = "image format", out: Path | None = None, out_text: str = "output folder") -> None:
    """--out (when `out` is given), --format and --quality, whose default is the same for every path."""
    if out is not None:
        parser.add_argument("--out", type=Path, default=out, metavar="DIR", help=out_text)
    parser.add_argument("--format", choices=formats, default=default_format, help=format_text)
    parser.add_argument("--quality", type=int, default=QUALITY, metavar="Q",
                        help="JPEG / WebP quality, 1-100 (PNG is lossless)")
