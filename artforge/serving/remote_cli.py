"""`artforge classify|generate --server HOST:PORT`: the local commands, done by a server.

Same arguments, same output and exit codes as the local commands in
artforge/cli.py: classify prints `path: label score, ...` (1 if an image
failed), generate writes `<model>_<seed>_<i>.<format>` into --out.
(`stylize --server` is the batch driver with batch/remote.py's executor.)
Errors that stop the whole command (server unreachable, unknown model,
wrong token) are raised as artforge errors; cli.main prints their one
sentence and exits 2.

Optional arguments read when the parser has them: --token (else
$ARTFORGE_TOKEN), --timeout, --retries, --tls-ca / --tls. The server's
encoded bytes are written as they come: no decode and re-encode here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.files import write_bytes_atomic
from artforge.serving.client import (
    CLASSIFIER,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    GENERATOR,
    ImageClient,
    image_bytes,
)

TOKEN_ENV = "ARTFORGE_TOKEN"
#: the server's names for the file suffixes written
_WIRE_FORMAT = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}
#: errors that belong to one image; anything else (server gone, bad token, unknown model) ends the command
_PER_IMAGE = (InvalidInputError, ResourceExhaustedError)


def connect(args: argparse.Namespace) -> ImageClient:
    """An ImageClient for the command's --server and connection options."""
    server = args.server
    if ":" not in server:
        raise InvalidInputError(f"--server must be HOST:PORT, e.g. 127.0.0.1:8001, got {server!r}")
    timeout = getattr(args, "timeout", None)
    retries = getattr(args, "retries", None)
    tls_ca = getattr(args, "tls_ca", None)
    return ImageClient(server, token=getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None,
                       timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
                       retries=DEFAULT_RETRIES if retries is None else retries,
                       tls=bool(getattr(args, "tls", False)), root_certificates=tls_ca)


# ----------------------------------------------------------------------- classify

def classify(args: argparse.Namespace) -> int:
    failed = 0
    with connect(args) as client:
        model = args.model or client.default_model(CLASSIFIER)
        for image in args.images:
            try:
                data = image_bytes(image)  # a missing file is this image's error, not the command's
                top = client.classify(data, model=model, top_k=args.top_k)
            except (*_PER_IMAGE, NotFoundError) as exc:
                if isinstance(exc, NotFoundError) and Path(image).is_file():
                    raise  # the server does not know the model: every image would fail alike
                print(f"{image}: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(f"{image}: " + ", ".join(f"{label} {score:.3f}" for label, score in top))
    return 1 if failed else 0


# ----------------------------------------------------------------------- generate

def generate(args: argparse.Namespace) -> int:
    fmt = args.format
    with connect(args) as client:
        model = args.model or client.default_model(GENERATOR)
        images = client.generate(args.count, seed=args.seed, model=model, format=_WIRE_FORMAT.get(f".{fmt}", fmt),
                                 quality=args.quality)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(images):
        write_bytes_atomic(args.out / f"{model}_{args.seed}_{i:03d}.{fmt}", data)
    print(f"wrote {len(images)} images from {model} to {args.out}")
    return 0
