"""`artforge stylize --server HOST:PORT`: the local command, done by a server; and `connect`, the
client of every `--server` command (classify and generate are in artforge/cli/runtime.py).

Same arguments, same output and exit codes as the local stylize: it takes
a file or a folder, mirrors the tree, writes atomically, resumes (skips
finished outputs, see artforge/resume.py), writes the same JSON report and
exits 1 if anything failed, 130 on Ctrl-C. Errors that stop the whole
command (server unreachable, unknown model, wrong token) are raised as
artforge errors; artforge.cli.main prints their one sentence and exits 2.

Optional arguments read when the parser has them: --token (else
$ARTFORGE_TOKEN), --timeout, --retries, --tls-ca / --tls. The server's
encoded bytes are written as they come: no decode and re-encode here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from artforge.batch_report import BatchReport, ModelStats, default_report_path
from artforge.defaults import CLIENT_RETRIES, CLIENT_TIMEOUT_S, TOKEN_ENV
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError, NotFoundError, ResourceExhaustedError
from artforge.files import FolderLock, clean_stale_temporaries, plan_stylize, write_bytes_atomic
from artforge.resume import Manifest, stamp
from artforge.serving.client import (
    STYLIZER,
    ImageClient,
    ModelInfo,
    image_bytes,
)

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
                       timeout=CLIENT_TIMEOUT_S if timeout is None else timeout,
                       retries=CLIENT_RETRIES if retries is None else retries,
                       tls=bool(getattr(args, "tls", False)), root_certificates=tls_ca)


# ------------------------------------------------------------------------ stylize

def _stylizers(client: ImageClient, names: str | None) -> dict[str, ModelInfo]:
    """The models to run, checked up front: in a stream an unknown model would fail every item one by one."""
    models = {m.name: m for m in client.list_models()}
    if not names:
        default = client.default_model(STYLIZER)
        return {default: models[default]}
    stylizers = ", ".join(name for name, m in models.items() if m.kind == STYLIZER) or "none"
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    for name in wanted:
        if name not in models:
            raise NotFoundError(f"no model named {name!r} on server {client.target}; stylizers there: {stylizers}")
        info = models[name]
        if info.ready and info.kind != STYLIZER:
            raise InvalidInputError(f"model {name} is a {info.kind}, not a stylizer; stylizers on server "
                                    f"{client.target}: {stylizers}")
        if not info.ready:
            raise ModelLoadError(f"model {name} on server {client.target} is not ready: {info.reason}")
    return {name: models[name] for name in wanted}


def _identity(info: ModelInfo) -> dict[str, object]:
    """What the server says makes a model's pixels: its name and the version it serves (the latest).

    The server's address is left out on purpose: the same deployment may be
    reached under another name, and that must not redo a finished folder.
    """
    versions = sorted(info.versions, key=lambda v: (len(v), v))
    return {"name": info.name, "version": versions[-1] if versions else None, "via": "server"}


def stylize(args: argparse.Namespace) -> int:
    """`artforge stylize --server`: the local command's plan, resume manifest, report and exit codes;
    the pixels come from the server's StylizeStream (tiling is the local tool's: --tile is refused)."""
    if getattr(args, "tile", None) is not None:
        raise InvalidInputError("--tile is not available with --server (the server stylizes whole images within "
                                "its own size limit); use --max-side, or stylize locally")
    started = time.perf_counter()
    source, output = Path(args.input), Path(args.output)
    with connect(args) as client:
        infos = _stylizers(client, args.model)
        plan = plan_stylize(source, output, args.format, list(infos))
        suffix = next(iter(plan.jobs[0][1].values())).suffix.lower() if plan.jobs else ".jpg"
        pixel_options = {"format": suffix.lstrip("."), "quality": args.quality, "max_side": args.max_side}
        force = bool(getattr(args, "force", False))
        report = BatchReport(input=str(source), output=str(output), skipped=plan.skipped, server=client.target,
                             options={**pixel_options, "force": force})
        report_path = getattr(args, "report", None) or default_report_path(source, output)
        lock = contextlib.nullcontext() if plan.single_file else FolderLock(plan.output)
        with lock:
            manifest = None
            if not plan.single_file:
                report.cleaned_temporaries = clean_stale_temporaries(plan.output)
                manifest = Manifest.load(plan.output)
            jobs: dict[str, list[tuple[Path, Path, list[int] | None]]] = {}
            for name, info in infos.items():
                stats = report.models[name] = ModelStats(identity=_identity(info),
                                                         backend=f"server {client.target} ({info.backend or '?'})")
                if manifest is not None:
                    stats.redone = manifest.begin(name, stats.identity, pixel_options, force)
                    if stats.redone:
                        print(stats.redone, file=sys.stderr)
                jobs[name] = []
                for path, targets in plan.jobs:
                    if manifest is not None and not force and manifest.is_current(name, targets[name], path):
                        stats.already_done += 1
                        report.outputs.append(targets[name])
                    else:  # stamped before the file is read, so an edit while it streams is noticed next time
                        jobs[name].append((path, targets[name], stamp(path)))
            if manifest is not None:
                manifest.save()
            todo = sum(len(j) for j in jobs.values())
            bar = tqdm(total=todo, desc="stylize", unit="img", disable=args.quiet or not todo, dynamic_ncols=True)
            try:
                for name, model_jobs in jobs.items():
                    if model_jobs:
                        _stream(client, args, name, suffix, plan.single_file, model_jobs, report, manifest, bar)
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                bar.close()
                report.not_done = todo - report.done - report.failed
                report.wall_seconds = time.perf_counter() - started
                if manifest is not None:
                    manifest.save()
                if report_path is not None:
                    report.write(report_path)
    report.print(report_path=report_path)
    if report.interrupted:
        print("artforge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def _stream(client: ImageClient, args: argparse.Namespace, model: str, suffix: str, single: bool,
            jobs: list[tuple[Path, Path, list[int] | None]], report: BatchReport, manifest: Manifest | None,
            bar: tqdm) -> None:
    """One model's outputs over one StylizeStream (items are pipelined and the server batches them)."""
    options = {"model": model, "format": _WIRE_FORMAT[suffix], "quality": args.quality, "max_side": args.max_side}
    def one() -> Iterator[tuple[int, bytes, BaseException | None]]:
        try:
            data = client.stylize(image_bytes(jobs[0][0]), **options)
        except _PER_IMAGE as exc:
            yield 0, b"", exc
        else:
            yield 0, data, None

    if single:  # one unary call: no stream to set up
        results = one()
    else:
        stream = client.stylize_many((path for path, _, _ in jobs), **options)
        results = ((r.index, r.image, r.error) for r in stream)
    # Closing the generator cancels the stream at once when Ctrl-C arrives.
    with contextlib.closing(results):
        for index, data, error in results:
            path, target, input_stamp = jobs[index]
            bar.update(1)
            if error is None:
                try:
                    write_bytes_atomic(target, data)
                except OSError as exc:
                    error = ArtforgeError(f"cannot write {target} ({exc.strerror})")
            if error is not None:
                report.fail(path, model, str(error), target)
                bar.set_postfix(failed=report.failed, refresh=False)
                continue
            report.models[model].done += 1
            report.outputs.append(target)
            if manifest is not None:
                manifest.record(model, target, path, input_stamp, stamp(target))
                manifest.maybe_save()
