"""The one orchestration of `artforge stylize IN OUT`, whatever executor makes the pixels.

    plan (walk IN, name outputs) ─► lock OUT ─► delete stale temporaries ─► manifest: load, begin each model,
    skip finished outputs, save ─► executor.run(pending work) ─► per outcome: progress, report, manifest
    record (+ journal) ─► manifest save, report write

- A failure belongs to one image (and model): it is reported, the run goes on.
- Ctrl-C (or `stop` set from another thread): the executor stops taking
  work and finishes what is in progress (writes are atomic); the manifest
  and the report are saved and BatchInterrupted (a KeyboardInterrupt)
  carries the report out.
- Resume: see batch/manifest.py. Stale temporaries of a killed run are
  deleted at the start; a lock keeps a second run out of the same folder.
- No data loss: the plan refuses a run whose outputs would land on its
  inputs (or where a later run would walk them); an output that exists and
  is not this tool's own (per the manifest) is refused as a failure unless
  options.overwrite; an output folder that cannot be written is one
  UnwritableOutputError (exit 2), never a traceback.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from artforge.batch.executor import BatchModel, Executor, Outcome, Work
from artforge.batch.folder import FolderLock, clean_stale_temporaries, output_errors
from artforge.batch.manifest import Manifest, stamp
from artforge.batch.options import BatchOptions
from artforge.batch.plan import StylizePlan, plan_stylize
from artforge.batch.report import BatchReport, ModelTally


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or stop) during run_stylize, after a clean stop; `report` says what was done."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__("interrupted")
        self.report = report


def _note(text: str) -> None:
    tqdm.write(text, file=sys.stderr)  # above the progress bar, not through it


def run_stylize(executor: Executor, source: Path, output: Path, options: BatchOptions | None = None, *,
                progress: bool = True, per_model: bool = False, report_path: Path | None = None,
                stop: threading.Event | None = None, log: Callable[[str], None] | None = None) -> BatchReport:
    """Stylize `source` (a file or a folder tree) with each of the executor's models into `output`.

    Folder outputs are resumable (OUT/stylize-manifest.json). per_model:
    outputs go to OUT/<model>/ even for one model. report_path: where to
    write the JSON report (None: nowhere). stop: set it (from another
    thread) to stop the run as Ctrl-C would. log: where the run's notes go
    (redone outputs, cleaned temporaries); default stderr, above the bar.
    Raises BatchInterrupted (with the report) on Ctrl-C or stop, after a clean stop.
    """
    options = options or BatchOptions()
    executor.check(options)
    note = log or _note
    stop = stop or threading.Event()
    started = time.perf_counter()
    plan = plan_stylize(Path(source), Path(output), options.fmt, [m.name for m in executor.models], per_model,
                        also_writes=[] if report_path is None else [Path(report_path)])
    options = dataclasses.replace(options, fmt=plan.suffix.lstrip("."))
    pixel_options = executor.pixel_options(options)
    report = BatchReport(input=str(source), output=str(output), skipped=plan.skipped, server=executor.server,
                         options={**pixel_options, **executor.tuning_options(options), "force": options.force,
                                  "overwrite": options.overwrite})
    with contextlib.ExitStack() as held:
        manifest = None
        if plan.single_file:
            with output_errors("the output", plan.output):
                plan.output.parent.mkdir(parents=True, exist_ok=True)
        else:
            with output_errors("to the output folder", plan.output):
                held.enter_context(FolderLock(plan.output))
                report.cleaned_temporaries = clean_stale_temporaries(plan.output, skip=plan.source)
                manifest = Manifest.load(plan.output)
            if report.cleaned_temporaries:
                note(f"deleted {report.cleaned_temporaries} temporary files left by an interrupted run")
        if report_path is not None:  # before the work, not after it
            with output_errors("the report", Path(report_path)):
                Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        work = _pending(plan, executor.models, pixel_options, options, report, manifest)
        refused = report.failed
        for tally in report.models.values():
            if tally.redone:
                note(tally.redone)
        if manifest is not None:
            # The new identities and the claims first: nothing written below can pass for an older run's,
            # and every file written below is known to be this tool's, even after a kill -9.
            with output_errors("to the output folder", plan.output):
                manifest.save()
        todo = sum(len(item.targets) for item in work)
        finished: set[Path] = set(report.outputs)
        bar = tqdm(total=todo, desc="stylize", unit="img", disable=not progress or not todo, dynamic_ncols=True)

        def record(outcome: Outcome) -> None:
            """Count one finished or failed output, and remember a finished one in the manifest."""
            target = outcome.work.targets[outcome.model]
            bar.update(1)
            if outcome.error is not None:
                report.fail(outcome.work.source, outcome.model, outcome.error, target)
                bar.set_postfix(failed=report.failed, refresh=False)
                return
            report.models[outcome.model].done += 1
            finished.add(target)
            if manifest is not None:
                manifest.record(outcome.model, target, outcome.work.source, outcome.work.input_stamp, stamp(target))
                manifest.maybe_save()

        try:
            executor.run(work, options, stop, record)
            report.interrupted = stop.is_set()
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
            timings = executor.timings()
            for name, seconds in timings.model_seconds.items():
                report.models[name].model_seconds = seconds
            report.decode_seconds, report.encode_seconds = timings.decode_seconds, timings.encode_seconds
            report.not_done = todo - report.done - (report.failed - refused)
            report.outputs = [targets[m.name] for m in executor.models for _, targets in plan.jobs
                              if targets[m.name] in finished]
            report.wall_seconds = time.perf_counter() - started
            if manifest is not None:
                manifest.drop_unwritten_claims()
                manifest.save()
            if report_path is not None:
                with output_errors("the report", Path(report_path)):
                    report.write(report_path)
    if report.interrupted:
        raise BatchInterrupted(report)
    return report


def _pending(plan: StylizePlan, models: Sequence[BatchModel], pixel_options: dict, options: BatchOptions,
             report: BatchReport, manifest: Manifest | None) -> list[Work]:
    """The work this run must do, claimed in the manifest; counts the outputs that are already done and
    refuses (as failures) those that would write over a file this tool did not write."""
    for model in models:
        tally = report.models[model.name] = ModelTally(identity=model.identity, backend=model.backend)
        if manifest is not None:
            tally.redone = manifest.begin(model.name, model.identity, pixel_options, options.force)
    work = []
    claims: dict[str, list[Path]] = {model.name: [] for model in models}
    for source, targets in plan.jobs:
        # Stamped before the file is read, so an edit while the run reads it is noticed next time.
        input_stamp = stamp(source)
        todo = {}
        for model in models:
            target = targets[model.name]
            if manifest is not None and not options.force and manifest.is_current(model.name, target, input_stamp):
                report.models[model.name].already_done += 1
                report.outputs.append(target)
            elif (not options.overwrite and os.path.lexists(target)
                  and not (manifest is not None and manifest.owns(model.name, target))):
                report.fail(source, model.name, f"{target} already exists and artforge stylize did not write it "
                            f"with {model.name}, so it was left as it is; move it, choose another output folder "
                            f"or pass --overwrite", target)
            else:
                todo[model.name] = target
                claims[model.name].append(target)
        if todo:
            work.append(Work(source, todo, input_stamp))
    if manifest is not None:
        for name, claimed in claims.items():
            manifest.claim(name, claimed)
    return work
