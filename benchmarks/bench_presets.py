"""What each style-training preset costs, and how good the printed time estimate is.

For each preset of `artforge train style`, a real run of --steps steps on the
zoo's sample photos with the progress bar off: the trainer prints its
estimate after its first steps (artforge.training.progress), and this script
timestamps every line it prints, so the estimate's "about N s" for the rest
of the run is compared with the time the rest actually took. The full
preset's time is projected from the steps measured after the estimate.

    python benchmarks/bench_presets.py [--steps 12] [--presets fast,zoo,quality]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.training import presets, style  # noqa: E402
from artforge.training.configs import StyleConfig  # noqa: E402
from artforge.training.progress import format_duration  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ESTIMATE = re.compile(r"(\d+) steps? to go at ([\d.e+-]+) s/step")


class Stamped(io.TextIOBase):
    """A stderr that remembers when each line was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append((time.perf_counter(), line))
        return len(text)


def measure(preset: str, steps: int, work: Path) -> dict[str, float]:
    cfg = presets.configure("style", StyleConfig, preset, style=str(ROOT / "zoo" / "styles" / "mosaic.jpg"),
                            data=str(ROOT / "zoo" / "samples"), out=str(work / preset), steps=steps,
                            sample_every=10_000, checkpoint_every=10_000, log_every=1, progress=False)
    stream = Stamped()
    with contextlib.redirect_stderr(stream):  # type: ignore[type-var]  # a TextIOBase is a text stream
        style.train(cfg)
    estimate = next((t, ESTIMATE.search(line)) for t, line in stream.lines if ESTIMATE.search(line))
    at, match = estimate
    assert match is not None
    left, per_step = int(match.group(1)), float(match.group(2))
    last = max(t for t, line in stream.lines if line.startswith(f"style step {steps}/"))
    actual = (last - at) / left
    planned = presets.PRESETS["style"][preset]["steps"]
    return {"estimate": per_step, "actual": actual, "ratio": actual / per_step, "planned": planned,
            "projected": actual * planned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps run per preset (the estimate needs 5+)")
    parser.add_argument("--presets", default=",".join(presets.PRESET_NAMES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.presets.split(","):
            result = measure(name, args.steps, Path(work))
            print(name, result, flush=True)
            rows.append((name, result))
    load = os.getloadavg()[0]
    lines = [f"Machine: {machine()}; load average {load:.1f} when written (above the core count, other work "
             "shared the CPU and the seconds are inflated)", "", f"Command: `{command_line()}`", "",
             f"`artforge train style --preset NAME` on the zoo's sample photos, {args.steps} steps each. "
             "`estimate`: s/step the trainer printed after its steps 2-4; `actual`: s/step of the steps after "
             "the estimate; `projected`: the whole preset at the actual rate.", "",
             "| preset | settings | estimate s/step | actual s/step | actual / estimate | planned steps | projected |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {presets.describe('style', name)} | {r['estimate']:.3g} | {r['actual']:.3g} | "
                     f"{r['ratio']:.2f} | {r['planned']:.0f} | {format_duration(r['projected'])} |")
    write_section("presets", "## Style training presets: cost and the estimate's accuracy\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
