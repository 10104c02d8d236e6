"""What one `artforge stylize` run did: counts, failures, timings, per model; printed and written as JSON.

The driver (batch/driver.py) keeps it for every executor. The JSON layout
(format 1) is documented in docs/batch.md; fields are only ever added.
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from artforge.batch.plan import is_single_file
from artforge.files import write_json_atomic

REPORT_NAME = "stylize-report.json"
FORMAT = 1


@dataclass
class Failure:
    input: str
    model: str
    reason: str
    output: str | None = None


@dataclass
class ModelTally:
    """One model's share of the run."""

    identity: dict[str, Any]
    backend: str
    done: int = 0
    already_done: int = 0
    failed: int = 0
    #: seconds spent inside the model's own inference calls (no decode, encode or blending)
    model_seconds: float = 0.0
    #: why its earlier outputs were redone (changed model or options, --force), if they were
    redone: str | None = None


@dataclass
class BatchReport:
    """The run's result: counts per model, failures, outputs, timings."""

    input: str
    output: str
    options: dict[str, Any] = field(default_factory=dict)
    models: dict[str, ModelTally] = field(default_factory=dict)
    #: non-image files under the input folder
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: every output that is finished now: made by this run or already done before
    outputs: list[Path] = field(default_factory=list)
    #: outputs planned for this run that it did not reach (interrupted)
    not_done: int = 0
    interrupted: bool = False
    started: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    #: wall time of the run after the models are loaded (planning, manifest and report included); run_seconds in JSON
    wall_seconds: float = 0.0
    #: summed busy time of the decode and encode workers (they overlap the model, so these exceed nothing)
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0
    #: stale temporaries of a killed earlier run deleted at the start
    cleaned_temporaries: int = 0
    #: HOST:PORT when an artforge server did the work (its model time is not known here)
    server: str | None = None

    @property
    def done(self) -> int:
        return sum(m.done for m in self.models.values())

    @property
    def already_done(self) -> int:
        return sum(m.already_done for m in self.models.values())

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def model_seconds(self) -> float:
        return sum(m.model_seconds for m in self.models.values())

    def fail(self, input: Path | str, model: str, reason: str, output: Path | str | None = None) -> None:
        self.failures.append(Failure(str(input), model, reason, None if output is None else str(output)))
        self.models[model].failed += 1

    def to_dict(self) -> dict[str, Any]:
        rate = self.done / self.wall_seconds if self.wall_seconds > 0 else None
        return {
            "format": FORMAT,
            "command": "stylize",
            "input": self.input,
            "output": self.output,
            "started": self.started,
            "interrupted": self.interrupted,
            "counts": {"planned": self.done + self.already_done + self.failed + self.not_done, "done": self.done,
                       "already_done": self.already_done, "failed": self.failed, "not_done": self.not_done,
                       "skipped_non_images": self.skipped},
            "server": self.server,
            # The two numbers the benchmarks compare (pipeline overhead = run / model - 1), also under timings.
            "model_seconds": None if self.server else round(self.model_seconds, 4),
            "run_seconds": round(self.wall_seconds, 4),
            "timings": {"wall_seconds": round(self.wall_seconds, 4), "run_seconds": round(self.wall_seconds, 4),
                        "model_seconds": None if self.server else round(self.model_seconds, 4),
                        "decode_seconds": round(self.decode_seconds, 4),
                        "encode_seconds": round(self.encode_seconds, 4),
                        "images_per_second": None if rate is None else round(rate, 3)},
            "options": self.options,
            "models": {name: {"identity": m.identity, "backend": m.backend, "done": m.done,
                              "already_done": m.already_done, "failed": m.failed,
                              "model_seconds": None if self.server else round(m.model_seconds, 4),
                              "redone": m.redone}
                       for name, m in self.models.items()},
            "cleaned_temporaries": self.cleaned_temporaries,
            "failures": [vars(f) for f in self.failures],
        }

    def write(self, path: Path) -> Path:
        return write_json_atomic(Path(path), self.to_dict())

    def summary_line(self) -> str:
        """One line; its start is stable for scripts: `stylized N, failed N, skipped N non-images`."""
        text = f"stylized {self.done}, failed {self.failed}, skipped {self.skipped} non-images"
        if self.already_done:
            text += f", {self.already_done} already done"
        if self.interrupted:
            text += f", {self.not_done} not done (interrupted)"
        return f"{text} -> {self.output}"

    def timing_line(self) -> str:
        rate = f", {self.done / self.wall_seconds:.2f} images/s" if self.wall_seconds > 0 and self.done else ""
        model = "" if self.server else f" (model {self.model_seconds:.1f} s)"
        return f"{self.wall_seconds:.1f} s{model}{rate}"

    def print(self, out: TextIO | None = None, err: TextIO | None = None, report_path: Path | None = None) -> None:
        """The summary line on stdout; timings, the report's path and one line per failure on stderr."""
        err = err or sys.stderr
        print(self.summary_line(), file=out or sys.stdout)
        where = f"; report: {report_path}" if report_path else ""
        print(f"  {self.timing_line()}{where}", file=err)
        for f in self.failures:
            print(f"  failed: {f.input} ({f.model}): {f.reason}", file=err)


def default_report_path(source: Path, output: Path) -> Path | None:
    """OUT/stylize-report.json when OUT is a folder; None (no report unless asked) for one output file."""
    if is_single_file(source, output):
        return None
    return Path(output) / REPORT_NAME
