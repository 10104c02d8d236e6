"""Long training work as a user meets it: a progress bar, or a log line every
N steps when the bar is off, and a time estimate measured on the run itself.

The estimate comes from timing this invocation's own first steps (the very
first is left out: it carries one-off costs such as memory allocation and
kernel selection), not from a cost model: a table of per-step costs would be
wrong on the next machine, while the run's own steps already include its
data, its device and whatever else the machine is doing. The steps timed are
real training steps, so measuring costs nothing and changes nothing.

No torch here: gatys, every trainer and the command line share it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

#: steps left out of the measurement at the start of an invocation (one-off costs)
WARMUP_STEPS = 1
#: steps timed for the estimate
MEASURED_STEPS = 3


def format_duration(seconds: float) -> str:
    """'40 s', '3 min 20 s', '2 h 35 min': as precise as an estimate deserves."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    if seconds < 3570:  # rounds to under an hour
        return f"{round(seconds / 60)} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min"


def format_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def write_line(text: str, bar_shown: bool, file: TextIO | None = None) -> None:
    """One line to `file` (stderr by default), through tqdm when a bar is shown so that it does not tear it."""
    out = file or sys.stderr
    if bar_shown:
        tqdm.write(text, file=out)
    else:
        print(text, file=out, flush=True)


class StepTimer:
    """Seconds per step of this invocation, from its steps WARMUP_STEPS+1 .. WARMUP_STEPS+MEASURED_STEPS."""

    def __init__(self, warmup: int = WARMUP_STEPS, measured: int = MEASURED_STEPS):
        self.warmup, self.measured = warmup, measured
        self.started = time.perf_counter()
        self.steps = 0
        self._mark: float | None = None
        self.seconds_per_step: float | None = None

    def tick(self, n: int = 1) -> bool:
        """Count n finished steps; True exactly once, when seconds_per_step has just been measured."""
        self.steps += n
        now = time.perf_counter()
        if self._mark is None and self.steps >= self.warmup:
            self._mark, self._mark_steps = now, self.steps
            return False
        if self.seconds_per_step is None and self._mark is not None and self.steps - self._mark_steps >= self.measured:
            self.seconds_per_step = (now - self._mark) / (self.steps - self._mark_steps)
            return True
        return False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def rate(self) -> float | None:
        """Seconds per step over everything after the warm-up so far (steadier than the first measurement)."""
        if self._mark is None or self.steps <= self._mark_steps:
            return self.seconds_per_step
        return (time.perf_counter() - self._mark) / (self.steps - self._mark_steps)


def estimate_line(what: str, steps_left: int, seconds_per_step: float, measured: str, extra_seconds: float = 0.0,
                  unit: str = "step") -> str:
    """One sentence: how long the rest will take and how that was worked out."""
    seconds = steps_left * seconds_per_step + extra_seconds
    finish = time.strftime("%H:%M", time.localtime(time.time() + seconds))
    return (f"{what}: {steps_left} {unit}{'s' if steps_left != 1 else ''} to go at {seconds_per_step:.3g} s/{unit} "
            f"({measured}) "
            f"-> about {format_duration(seconds)}, done around {finish}")


class StepProgress:
    """What a step-counted loop shows: a tqdm bar, or log lines when the bar is off, plus the estimate.

    A drop-in for the tqdm bar the trainers used (update, set_postfix, close):
    set_postfix is called whenever the loop logs its losses (every --log-every
    steps); with the bar off, each such call prints one line instead, so a run
    with --no-progress still says where it is. The estimate is printed once,
    after the first WARMUP_STEPS + MEASURED_STEPS steps of this invocation.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: bool = True, unit: str = "step",
                 file: TextIO | None = None, extra_seconds: Callable[[float], float] | None = None):
        """extra_seconds(seconds_per_step): work the steps do not include (validation, sampling), if known."""
        self.total, self.step, self.desc, self.enabled, self.unit = total, initial, desc, enabled, unit
        self.file = file
        self.extra_seconds = extra_seconds
        self.timer = StepTimer()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)

    def write(self, text: str) -> None:
        """A line that does not tear the bar."""
        write_line(text, self.enabled, self.file)

    def update(self, n: int = 1) -> None:
        self.step += n
        self.bar.update(n)
        if self.timer.tick(n) and self.timer.seconds_per_step is not None and self.step < self.total:
            first = self.step - self.timer.measured + 1
            extra = self.extra_seconds(self.timer.seconds_per_step) if self.extra_seconds else 0.0
            self.write(estimate_line(self.desc, self.total - self.step, self.timer.seconds_per_step,
                                     f"measured on {self.unit}s {first}-{self.step} of this run", extra, self.unit))

    def set_postfix(self, **values: Any) -> None:
        if self.enabled:
            self.bar.set_postfix(**values)
            return
        self.write(self.log_line(values))

    def log_line(self, values: dict[str, Any]) -> str:
        parts = [f"{self.desc} {self.unit} {self.step}/{self.total}", format_values(values)]
        rate = self.timer.rate()
        if rate is not None:
            left = f", ~{format_duration(rate * (self.total - self.step))} left" if self.step < self.total else ""
            parts.append(f"{rate:.3g} s/{self.unit}, {format_duration(self.timer.elapsed)} elapsed{left}")
        return "  ".join(p for p in parts if p)

    def close(self) -> None:
        self.bar.close()


class PhaseProgress:
    """The estimate and the log lines for a loop that keeps its own bars (the classifier's per-epoch bars).

    begin() starts a phase with the steps it has left; the estimate is printed
    once that phase's first steps are timed, so a phase whose steps cost more
    (more layers training) gets its own. With the bars off, step() prints a
    line every log_every steps.
    """

    def __init__(self, desc: str, enabled: bool, log_every: int, file: TextIO | None = None):
        self.desc, self.enabled, self.log_every, self.file = desc, enabled, log_every, file
        self.label, self.steps_left, self.note = "", 0, ""
        self.extra_seconds: Callable[[float], float] | None = None
        self.timer = StepTimer()

    def write(self, text: str) -> None:
        write_line(text, self.enabled, self.file)

    def begin(self, label: str, steps_left: int, extra_seconds: Callable[[float], float] | None = None,
              note: str = "") -> None:
        """extra_seconds(seconds_per_step): the phase's other work (validation) in seconds; note: a last clause."""
        self.label, self.steps_left, self.extra_seconds, self.note = label, steps_left, extra_seconds, note
        self.timer = StepTimer()

    def step(self, global_step: int, values: dict[str, Any]) -> None:
        self.steps_left -= 1
        if self.timer.tick() and self.timer.seconds_per_step is not None and self.steps_left > 0:
            rate = self.timer.seconds_per_step
            first = self.timer.steps - self.timer.measured + 1
            line = estimate_line(f"{self.desc} {self.label}", self.steps_left, rate,
                                 f"measured on its steps {first}-{self.timer.steps}",
                                 self.extra_seconds(rate) if self.extra_seconds else 0.0)
            self.write(line + (f"; {self.note}" if self.note else ""))
        if not self.enabled and global_step % self.log_every == 0:
            now = self.timer.rate()
            timing = "" if now is None else (f"  {now:.3g} s/step, ~{format_duration(now * self.steps_left)} "
                                             f"left in {self.label}")
            self.write(f"{self.desc} {self.label} step {global_step}  {format_values(values)}{timing}")
