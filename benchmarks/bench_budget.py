"""`auto` within each model's accuracy budget: what it picks for every zoo model, how fast, how far from fp32,
and what the measured trial costs at load.

Three settings per model, each on a copy of the zoo's repository with a fresh decision cache (so every
load runs the trial):

- exact: `--backend exact`, the fastest fp32 backend (what `auto` was before budgets);
- auto: the default budget, on the zoo as shipped (candidates: fp32 and OpenVINO bf16 where the CPU has it);
- auto + variants: the default budget, after making each model's int8 (unsigned activations, ONNX
  Runtime CPU's fast path) and fp16 variants with `make_variant` (calibrated on crops of the bundled photos);
- loose budget + variants: a budget that admits int8 (stylizer PSNR >= 30 dB and any level difference,
  classifier top-1 >= 90 % and probabilities within 0.3, generator MAE <= 2 levels).

For each: the choice, its measured deviation, the first load's wall time (the trial), then p50 of the
chosen backend on auto's trial input (stylizer 1x256², classifier 1x224², generator 8 latents), timed
side by side with exact's choice.

    python benchmarks/bench_budget.py [--quick]

Writes the `budget` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, measure, percentile, write_section  # noqa: E402

from artforge import accuracy, contract  # noqa: E402
from artforge.export.options import Thresholds  # noqa: E402
from artforge.export.precision import make_variant  # noqa: E402
from artforge.runtime import Repository  # noqa: E402
from artforge.runtime.backends import auto  # noqa: E402
from artforge.zoo.datasets import content_images  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("swirl", "mosaic", "art_style", "abstract_dcgan")
#: every variant is written: the budget, not the variant thresholds, is what this benchmark is about
REPORT_ONLY = Thresholds(min_top1_agreement=0.0, max_prob_diff=1.0, min_psnr=0.0, min_ssim=0.0, max_mae=255.0)
LOOSE = {"min_psnr": 30.0, "max_level_diff": 255, "min_top1_agreement": 0.9, "max_prob_diff": 0.3, "max_mae": 2.0}


def load(repo: Path, name: str, backend: str, cache: Path) -> tuple[object, float, dict]:
    """The model loaded with a fresh decision cache: (model, load seconds, the decision written)."""
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["ARTFORGE_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    model = Repository(repo).load(name, backend=backend, threads=None)
    seconds = time.perf_counter() - started
    files = list((cache / "auto").glob("*.json"))
    return model, seconds, json.loads(files[0].read_text()) if files else {}


def deviation(kind: str, decision: dict, choice: str) -> str:
    if choice == decision.get("reference"):
        return "0 (the fp32 reference)"
    metrics = (decision.get("deviations") or {}).get(choice)
    return accuracy.summary(kind, metrics) if metrics else "not measured (exact)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration images, shorter timing")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 2.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        repo.mkdir()
        for name in MODELS:
            shutil.copytree(ROOT / "zoo" / "repository" / name, repo / name)
        photos = work / "photos"
        content_images(photos, seed=1, count=24 if args.quick else 96, size=256, progress=False)
        plan = [("exact", "exact", False), ("auto", "auto", False), ("auto + variants", "auto", True),
                ("loose budget + variants", "auto", True)]
        made = False
        for label, backend, variants in plan:
            if variants and not made:
                for name in MODELS:
                    kind = Repository(repo).load(name, backend="onnxruntime:cpu").metadata.kind
                    for precision in contract.VARIANT_PRECISIONS:
                        make_variant(repo, name, precision, activation_type="uint8", thresholds=REPORT_ONLY,
                                     calibration=None if kind == contract.GENERATOR else photos,
                                     calibration_count=24 if args.quick else 96, calibration_size=128,
                                     evaluation_count=8, log=None)
                made = True
            for name in MODELS:
                if label.startswith("loose"):
                    accuracy.write_budget(repo / name, LOOSE)
                model, load_s, decision = load(repo, name, backend, work / "cache")
                exact, _, _ = load(repo, name, "exact", work / "cache-exact")
                kind = model.kind
                feeds = auto.trial_input(model.backend)
                timed = {}
                for who, m in (("choice", model), ("exact", exact)):
                    times = measure(lambda m=m, f=feeds: m.backend.run(f), min_runs=5, min_seconds=seconds)
                    timed[who] = percentile(times, 50) * 1000
                choice = model.backend_name
                rows.append(f"| {name} | {label} | {choice} | {deviation(kind, decision, choice)} | "
                            f"{timed['choice']:.1f} | {exact.backend_name} {timed['exact']:.1f} | "
                            f"{timed['exact'] / timed['choice']:.2f}x | {load_s:.1f} | "
                            f"{len(decision.get('over_budget') or {})} |")
                print(rows[-1], flush=True)
                accuracy.write_budget(repo / name, {})
    body = "\n".join([
        "## auto within the accuracy budget: choice, deviation, speed and trial cost per zoo model", "",
        f"Command: `{command_line()}`  ", f"Machine: {machine()}.", "",
        "Each load runs the trial (fresh cache). p50 on auto's trial input (stylizer 1x256², classifier "
        "1x224², generator 8 latents), the choice and exact's choice timed side by side. Variants: int8 with "
        "unsigned activations and fp16, calibrated on crops of the bundled photos. Loose budget: "
        f"`{json.dumps(LOOSE)}`.", "",
        "| model | setting | auto's choice | measured deviation | p50 ms | exact's choice, p50 ms | speed-up | "
        "first load s (trial) | candidates over budget |",
        "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: |", *rows])
    write_section("budget", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
