"""The `artforge` command.

Runtime commands (models, classify, generate, stylize, demo) never import
torch; `train`, `export` and `zoo build` import it lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from artforge.errors import ArtforgeError

if TYPE_CHECKING:
    from artforge.batch.executor import Executor
    from artforge.batch.options import BatchOptions

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZOO = PROJECT_ROOT / "zoo"


def default_repo() -> Path:
    """The shipped zoo's repository, unless ARTFORGE_REPO points elsewhere."""
    return Path(os.environ.get("ARTFORGE_REPO", DEFAULT_ZOO / "repository"))


def _add_server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="HOST:PORT of an artforge server instead of running locally")
    p.add_argument("--token", default=None, help="bearer token for --server (default: $ARTFORGE_TOKEN)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per call to --server (default 60)")
    p.add_argument("--retries", type=int, default=3, help="retries when --server is unavailable (default 3)")
    p.add_argument("--tls", action="store_true", help="connect to --server over TLS")
    p.add_argument("--tls-ca", default=None, help="PEM file of the CA that signed the server's certificate")


def _add_repo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, default=None,
                   help="model repository folder (default: the shipped zoo, or $ARTFORGE_REPO)")
    p.add_argument("--backend", default="auto",
                   help="runtime backend: auto (default: the fastest exact backend, measured once per model), "
                        "auto:bf16 (may also pick bfloat16), or a name: onnxruntime, openvino:fp32, openvino:bf16, ...")


def _repository(args: argparse.Namespace):
    from artforge.runtime import Repository
    return Repository(args.repo or default_repo())


def _pick_model(repo, kind: str, name: str | None) -> str:
    """The named model, or the only/first model of the wanted kind."""
    if name:
        return name
    candidates = [d["name"] for d in repo.describe() if d.get("kind") == kind]
    if not candidates:
        raise ArtforgeError(f"repository {repo.path} has no {kind} model; pass --model or another --repo")
    return candidates[0]


# ----------------------------------------------------------------- training
def _cmd_train(args: argparse.Namespace) -> int:
    module = _train_module(args.kind)
    run = module.train(module.config_from_args(args))
    print(f"trained {args.kind}: {run}")
    return 0


def _train_module(kind: str):
    if kind == "classifier":
        from artforge.training import classifier as module
    elif kind == "dcgan":
        from artforge.training import dcgan as module
    else:
        from artforge.training import style as module
    return module


def _cmd_export(args: argparse.Namespace) -> int:
    from artforge.export import run_from_args
    path = run_from_args(args)
    print(f"exported: {path}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from artforge.export.precision_options import run_from_args
    path, report = run_from_args(args)
    print(f"{report['precision']} variant: {path} (accuracy report: {path.parent / 'accuracy.json'})")
    return 0


# ------------------------------------------------------------------ runtime
def _cmd_models(args: argparse.Namespace) -> int:
    repo = _repository(args)
    rows = repo.describe()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no models in {repo.path}")
    for row in rows:
        versions = ",".join(str(v) for v in row.get("versions", []))
        detail = row.get("error") or row.get("summary", "")
        print(f"{row['name']:<24} {row.get('kind', '?'):<11} v{versions:<6} {detail}")
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    if args.server:
        return _remote(args, "classify")
    repo = _repository(args)
    model = repo.load(_pick_model(repo, "classifier", args.model), backend=args.backend)
    failed = 0
    for image in args.images:
        try:
            top = model.classify(image, top_k=args.top_k)
        except ArtforgeError as exc:
            print(f"{image}: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{image}: " + ", ".join(f"{label} {score:.3f}" for label, score in top))
    return 1 if failed else 0


def _cmd_generate(args: argparse.Namespace) -> int:
    if args.server:
        return _remote(args, "generate")
    from artforge.runtime import write_image
    repo = _repository(args)
    model = repo.load(_pick_model(repo, "generator", args.model), backend=args.backend)
    images = model.generate(args.count, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        write_image(args.out / f"{model.name}_{args.seed}_{i:03d}.{args.format}", image, quality=args.quality)
    print(f"wrote {len(images)} images from {model.name} to {args.out}")
    return 0


def _cmd_stylize(args: argparse.Namespace) -> int:
    from artforge.batch.options import options_from_args
    options = options_from_args(args)
    if args.server:
        from artforge.batch.remote import RemoteExecutor
        from artforge.serving.remote_cli import connect
        with connect(args) as client:
            return _stylize(RemoteExecutor(client, args.model), args, options)
    from artforge.batch.local import LocalExecutor
    LocalExecutor.check(options)  # before any model loads
    repo = _repository(args)
    names = [n.strip() for n in args.model.split(",") if n.strip()] if args.model else []
    models = [repo.stylizer(name, backend=args.backend) for name in names or [_pick_model(repo, "stylizer", None)]]
    return _stylize(LocalExecutor(models), args, options)


def _stylize(executor: Executor, args: argparse.Namespace, options: BatchOptions) -> int:
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


def _remote(args: argparse.Namespace, what: str) -> int:
    """The same command, done by an artforge server through the client SDK."""
    from artforge.serving import remote_cli
    return getattr(remote_cli, what)(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Every zoo model on the bundled photos: stylize, classify, generate."""
    from artforge.batch.driver import run_stylize
    from artforge.batch.local import LocalExecutor
    from artforge.batch.options import BatchOptions
    from artforge.runtime import write_image
    from artforge.runtime.grid import tile_grid
    repo = _repository(args)
    samples = DEFAULT_ZOO / "samples"
    out: Path = args.out
    started = time.perf_counter()
    names = {kind: [r["name"] for r in repo.describe() if r.get("kind") == kind]
             for kind in ("classifier", "generator", "stylizer")}
    stylizers = [repo.stylizer(name, backend=args.backend) for name in names["stylizer"]]
    summary = run_stylize(LocalExecutor(stylizers), samples, out / "stylized", BatchOptions(fmt="jpg", quality=90),
                          progress=False, per_model=True)
    print(f"stylized {summary.done} images with {', '.join(names['stylizer'])} -> {out / 'stylized'}")
    lines = []
    for name in names["classifier"]:
        model = repo.load(name, backend=args.backend)
        for image in sorted(samples.iterdir()) + summary.outputs:
            (label, score), = model.classify(image, top_k=1)
            lines.append(f"{name}: {image.relative_to(image.parents[1])} -> {label} ({score:.2f})")
    (out / "classification.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(f"  {line}" for line in lines))
    for name in names["generator"]:
        model = repo.load(name, backend=args.backend)
        target = out / "generated" / f"{name}.png"
        write_image(target, tile_grid(model.generate(16, seed=0), columns=4))
        print(f"generated 16 images with {name} -> {target}")
    print(f"demo done in {time.perf_counter() - started:.1f} s; results in {out.resolve()}")
    return 1 if summary.failed else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from artforge.serving.cli_args import run_from_args
    args.repo = args.repo or default_repo()
    return run_from_args(args)


def _cmd_zoo(args: argparse.Namespace) -> int:
    from artforge.zoo import build_zoo
    build_zoo(out=args.out, work=args.work, quick=args.quick, only=args.only, sheet=args.sheet)
    return 0


# --------------------------------------------------------------------- main
def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """`full=False` leaves out the torch-backed commands' own options, so that
    runtime commands start fast and without torch."""
    parser = argparse.ArgumentParser(prog="artforge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (needs the [train] extra)")
    train_sub = train.add_subparsers(dest="kind", required=True)
    for kind, text in (("classifier", "fine-tune EfficientNet-Lite0 on an image folder"),
                       ("dcgan", "train a DCGAN generator on an image folder"),
                       ("style", "train a feed-forward style network")):
        p = train_sub.add_parser(kind, help=text)
        if full:
            _train_module(kind).add_arguments(p)
        p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="export a trained run to ONNX in a model repository (verified)")
    if full:
        from artforge.export import add_arguments as add_export_arguments
        add_export_arguments(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("quantize", help="make an fp16 or int8 variant of a repository model, measured against it")
    from artforge.export.precision_options import add_arguments as add_quantize_arguments
    add_quantize_arguments(p)  # argparse only: onnx and onnxruntime are imported when the command runs
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("build-engine", help="build a TensorRT engine (model.plan) for a repository model (GPU)")
    from artforge.tensorrt_cli import add_arguments as add_engine_arguments
    from artforge.tensorrt_cli import run_from_args as run_build_engine
    add_engine_arguments(p)  # argparse only: tensorrt and torch are imported when the command runs
    p.set_defaults(func=run_build_engine)

    p = sub.add_parser("models", help="list the models of a repository")
    _add_repo(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("classify", help="classify image files")
    _add_repo(p)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", help="classifier name (default: the repository's first classifier)")
    p.add_argument("--top-k", type=int, default=3)
    _add_server(p)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("generate", help="generate images with a DCGAN generator")
    _add_repo(p)
    p.add_argument("--model", help="generator name (default: the repository's first generator)")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("generated"))
    p.add_argument("--format", choices=("png", "jpg", "webp"), default="png")
    p.add_argument("--quality", type=int, default=None, help="JPEG/WebP quality 1-100")
    _add_server(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("stylize", help="stylize an image file or a folder of images")
    _add_repo(p)
    p.add_argument("input", type=Path, help="image file or folder (walked recursively)")
    p.add_argument("output", type=Path, help="output file (for one input file) or folder")
    p.add_argument("--model", help="stylizer name(s), comma-separated (default: the first stylizer)")
    p.add_argument("--format", choices=("jpg", "png", "webp"), default=None,
                   help="output format (default: the output file's extension, else jpg)")
    p.add_argument("--quality", type=int, default=None, help="JPEG/WebP quality 1-100")
    p.add_argument("--max-side", type=int, default=None, help="downscale inputs whose longer side exceeds this")
    p.add_argument("--batch-size", type=int, default=4,
                   help="same-size images per model call (default 4; see docs/batch.md)")
    p.add_argument("--tile", type=int, default=None,
                   help="run images larger than SIZE in overlapping SIZE x SIZE tiles, blended seamlessly")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="PX",
                   help="overlap of neighbouring tiles (default: an eighth of the tile)")
    p.add_argument("--tile-above", type=float, default=4.0, metavar="MP",
                   help="tile images over MP megapixels automatically, in 1024 px tiles unless --tile (default 4)")
    p.add_argument("--max-pixels", type=float, default=100.0, metavar="MP",
                   help="refuse images over MP megapixels, before decoding them (default 100)")
    p.add_argument("--workers", type=int, default=None,
                   help="decode and encode threads, each (default: half the cores, 1 to 4)")
    p.add_argument("--force", action="store_true", help="redo every output, even those finished by an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="write over existing files in OUT that artforge stylize did not write (never over an input)")
    p.add_argument("--report", type=Path, default=None,
                   help="JSON report to write (default: OUT/stylize-report.json when OUT is a folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_server(p)
    p.set_defaults(func=_cmd_stylize)

    p = sub.add_parser("serve", help="serve a repository over gRPC (KServe v2 + artforge.v1 image API)")
    _add_repo(p)
    from artforge.serving.cli_args import add_arguments as add_serve_arguments
    add_serve_arguments(p, include_repo=False)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run every shipped zoo model on the bundled sample photos")
    _add_repo(p)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("zoo", help="rebuild the shipped default model zoo (trains every model; slow)")
    zoo_sub = p.add_subparsers(dest="zoo_command", required=True)
    b = zoo_sub.add_parser("build", help="make the data, train, export and document every zoo model")
    b.add_argument("--out", type=Path, default=Path("zoo"), help="zoo folder to write (default: zoo/)")
    b.add_argument("--work", type=Path, default=Path(".zoo-work"), help="datasets and training runs")
    b.add_argument("--sheet", type=Path, default=Path("docs/contact_sheet.png"),
                   help="contact sheet PNG of the samples in every style")
    b.add_argument("--quick", action="store_true", help="tiny settings, for testing the build itself")
    b.add_argument("--only", default=None, help="comma-separated subset of zoo models to (re)build")
    b.set_defaults(func=_cmd_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    full = not argv or argv[0] in ("train", "export", "-h", "--help")
    args = build_parser(full).parse_args(argv)
    try:
        return args.func(args)
    except (ArtforgeError, FileNotFoundError, ValueError) as exc:
        print(f"artforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
