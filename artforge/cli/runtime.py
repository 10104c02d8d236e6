"""`artforge models`, `classify` and `generate`: a repository's models, in-process or through `--server`.

The local and the `--server` path of a command sit side by side and print
the same lines: classify `path: label score, ...` (exit 1 if an image
failed), generate `<model>_<seed>_<i>.<format>` files in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    positive_int,
)
from artforge.defaults import GENERATE_COUNT, TOP_K
from artforge.errors import ArtforgeError, InvalidInputError

#: labels a models listing names before it says how many more there are
_LISTED_LABELS = 6


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "models", "list the models of a repository", run_models)
    add_repository(parser)
    parser.add_argument("--json", action="store_true", help="everything the repository says, as JSON")

    parser = add_command(commands, "classify", "classify image files, or every image in folders", run_classify)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="image file, or folder (walked recursively for image files)")
    add_repository(parser)
    add_model_choice(parser, "classifier")
    parser.add_argument("--top-k", type=positive_int, default=TOP_K, metavar="K",
                        help="labels printed per image, most probable first")
    add_backend(parser)
    add_server_connection(parser)

    parser = add_command(commands, "generate", "generate images with a DCGAN generator", run_generate)
    add_repository(parser)
    add_model_choice(parser, "generator")
    parser.add_argument("--count", type=positive_int, default=GENERATE_COUNT, help="images to generate")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the latent draw: the same seed and model give the same images")
    add_output(parser, formats=("png", "jpg", "webp"), default_format="png", out=Path("generated"),
               out_text="folder the images are written to, as <model>_<seed>_<index>.<format>")
    add_backend(parser)
    add_server_connection(parser)


# ---------------------------------------------------------------------- models
def run_models(args: argparse.Namespace) -> int:
    repo = open_repository(args)
    rows = repo.describe()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no models in {repo.path}")
        return 0
    table = [(row["name"], row.get("kind", "?"), "v" + ",".join(str(v) for v in row.get("versions", [])),
              _summary(row)) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    for line in table:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[3]]).rstrip())
    return 0


def _summary(row: dict[str, Any]) -> str:
    """What a model takes and gives, in a few words (or why it cannot be read)."""
    if "error" in row:
        return f"error: {row['error']}"
    kind = row.get("kind")
    if kind == "classifier":
        labels = row.get("labels") or []
        named = ", ".join(labels[:_LISTED_LABELS]) + (f", ... ({len(labels)} in all)"
                                                       if len(labels) > _LISTED_LABELS else "")
        return f"{row.get('input_size')} px in, {len(labels)} labels: {named}"
    if kind == "generator":
        return f"latent {row.get('latent_size')} -> {row.get('output_size')} px images"
    if kind == "stylizer":
        return f"any size, in multiples of {row.get('size_multiple')} px"
    return ""


# -------------------------------------------------------------------- classify
def image_files(paths: list[Path]) -> list[Path]:
    """The files named, with each folder replaced by the image files under it (as `stylize` walks a folder)."""
    from artforge.batch.plan import IMAGE_SUFFIXES, walk_images

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found, _ = walk_images(path)
            if not found:
                raise InvalidInputError(f"folder {path} holds no images; images are files named "
                                        f"{', '.join(sorted(IMAGE_SUFFIXES))}")
            files.extend(found)
        else:
            files.append(path)  # a missing or broken file is that image's error, reported in its turn
    return files


def _print_labels(image: Path, top: list[tuple[str, float]]) -> None:
    print(f"{image}: " + ", ".join(f"{label} {score:.3f}" for label, score in top))


def run_classify(args: argparse.Namespace) -> int:
    images = image_files(args.images)
    if args.server:
        return _classify_remote(args, images)
    repo = open_repository(args)
    model = repo.classifier(pick_model(repo, "classifier", args.model), backend=args.backend)
    failed = 0
    for image in images:
        try:
            top = model.classify(image, top_k=args.top_k)
        except ArtforgeError as exc:
            print(f"{image}: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        _print_labels(image, top)
    return 1 if failed else 0


def _classify_remote(args: argparse.Namespace, images: list[Path]) -> int:
    from artforge.errors import NotFoundError, ResourceExhaustedError
    from artforge.serving.client import CLASSIFIER, image_bytes

    failed = 0
    with connect(args) as client:
        model = args.model or client.default_model(CLASSIFIER)
        for image in images:
            try:
                data = image_bytes(image)  # a missing file is this image's error, not the command's
                top = client.classify(data, model=model, top_k=args.top_k)
            except (InvalidInputError, ResourceExhaustedError, NotFoundError) as exc:
                if isinstance(exc, NotFoundError) and image.is_file():
                    raise  # the server does not know the model: every image would fail alike
                print(f"{image}: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            _print_labels(image, top)
    return 1 if failed else 0


# -------------------------------------------------------------------- generate
def run_generate(args: argparse.Namespace) -> int:
    if args.server:
        return _generate_remote(args)
    from artforge.runtime import write_image

    repo = open_repository(args)
    model = repo.generator(pick_model(repo, "generator", args.model), backend=args.backend)
    images = model.generate(args.count, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        write_image(args.out / _generated_name(model.name, args, i), image, quality=args.quality)
    print(f"wrote {len(images)} images from {model.name} to {args.out}")
    return 0


def _generate_remote(args: argparse.Namespace) -> int:
    from artforge.files import write_bytes_atomic
    from artforge.serving.client import GENERATOR

    with connect(args) as client:
        model = args.model or client.default_model(GENERATOR)
        wire_format = "jpeg" if args.format == "jpg" else args.format  # the server's name of the format
        images = client.generate(args.count, seed=args.seed, model=model, format=wire_format, quality=args.quality)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(images):
        write_bytes_atomic(args.out / _generated_name(model, args, i), data)  # the server's bytes, as they came
    print(f"wrote {len(images)} images from {model} to {args.out}")
    return 0


def _generated_name(model: str, args: argparse.Namespace, index: int) -> str:
    return f"{model}_{args.seed}_{index:03d}.{args.format}"
