"""The benchmark suite: every model kind, every peer, side by side in one run.

For each case (classifier 224², generator latents, a Johnson-size stylizer at
256², 512² and 1024²; batch 1 and the best batch) it times, on the same
inputs: PyTorch eager, torch.compile, a plain ONNX Runtime session with
default options, OpenVINO used directly (its defaults, which are bf16 on CPUs
with AVX512-BF16 or AMX, and its f32 hint; each also compiled for the case's
static shape, as OpenVINO's own benchmark_app does), and artforge's runtime
with each backend, with its default backend string (`auto`, whatever that
decides on this machine), with `exact` (fp32 only) and with `auto:bf16`.
Every row records the precision it computed in, and its attained GFLOP/s is
given against the measured matrix-product peak of that precision (fp32 or
bf16; benchmarks/peaks.py). A summary puts, per case, OpenVINO's defaults
next to artforge's default and `auto:bf16`, and the fastest exact peer next
to artforge's `exact`, with ratios. Then it runs `artforge stylize` end to end
on a folder of JPEGs against the naive one-image-at-a-time script users write
(benchmarks/naive_stylize.py), and times the fp16/int8 variants of each zoo
model on every CPU backend next to their measured accuracy
(benchmarks/bench_precision.py).

    python benchmarks/bench_suite.py            # everything (about 20 minutes on 2 cores)
    python benchmarks/bench_suite.py --quick    # small sizes, for checking the suite itself
    python benchmarks/bench_suite.py --quick --only stylizer --no-compile   # one part

Writes the `suite`, `end-to-end` and `precision` sections of benchmarks/RESULTS.md
(and suite.json) and PNG plots under benchmarks/plots/. TensorRT rows appear
when a CUDA device and the tensorrt package are present (an engine is built
for each case).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, measure, percentile, write_section  # noqa: E402
from peaks import bf16_matmul_peak, fp32_matmul_peak  # noqa: E402

from artforge import contract  # noqa: E402
from artforge.errors import InvalidInputError  # noqa: E402
from artforge.export.onnx_export import LoadedRun, export_onnx, load_run, publish  # noqa: E402
from artforge.export.wrappers import wrap  # noqa: E402
from artforge.runtime import load_model  # noqa: E402
from artforge.runtime.backends import OpenVinoBackend, available_backends  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "zoo"
PLOTS = Path(__file__).resolve().parent / "plots"
PARTS = ("classifier", "generator", "stylizer", "end-to-end", "precision")


# ----------------------------------------------------------------- models
def johnson_stylizer(repo: Path) -> tuple[Path, torch.nn.Module]:
    """A Johnson-size (width 1.0) style network, random weights: the network the issue's peer timings use.
    Speed does not depend on the weights, so no training is needed."""
    from artforge.models.style_net import MIN_SIZE, SIZE_MULTIPLE, TransformerNet

    torch.manual_seed(0)
    wrapper = wrap(contract.STYLIZER, TransformerNet(width=1.0), size_multiple=SIZE_MULTIPLE).eval()
    meta = contract.ModelMetadata(kind=contract.STYLIZER, size_multiple=SIZE_MULTIPLE, min_size=MIN_SIZE,
                                  provenance={"note": "random weights, for benchmarks"})
    example = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    loaded = LoadedRun(run=Path("johnson"), wrapper=wrapper, metadata=meta, example=example)
    path = publish(wrapper, export_onnx(loaded), meta, repo, "johnson", version=1, log=None)
    return path, wrapper


@dataclass
class Case:
    model: str
    kind: str
    label: str
    onnx: Path
    wrapper: torch.nn.Module
    batch: np.ndarray
    input_name: str
    flops: float | None = None
    rows: list[dict] = field(default_factory=list)


def make_batch(kind: str, meta: contract.ModelMetadata, n: int, side: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == contract.GENERATOR:
        return rng.standard_normal((n, meta.latent_size), dtype=np.float32)
    s = side or meta.input_size
    return rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def count_flops(wrapper: torch.nn.Module, batch: np.ndarray) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        wrapper(torch.from_numpy(batch))
    return float(counter.get_total_flops())


# ------------------------------------------------------------------ peers
Runner = Callable[[], object]


@dataclass
class Prepared:
    """A peer ready to run one case: the call to time, what artforge chose, the precision it computes in."""

    run: Runner
    precision: str = "fp32"
    chosen: str | None = None


Peer = Callable[[Case], Prepared]


def torch_eager(case: Case) -> Prepared:
    x = torch.from_numpy(case.batch)

    def run() -> object:
        with torch.inference_mode():
            return case.wrapper(x)
    return Prepared(run)


def torch_compiled(case: Case) -> Prepared:
    compiled = torch.compile(case.wrapper, dynamic=False)
    x = torch.from_numpy(case.batch)

    def run() -> object:
        with torch.inference_mode():
            return compiled(x)
    run()  # compiles; a failure surfaces here and the row says why
    return Prepared(run)


def ort_plain(case: Case) -> Prepared:
    import onnxruntime as ort

    session = ort.InferenceSession(str(case.onnx), providers=["CPUExecutionProvider"])
    return Prepared(lambda: session.run(None, {case.input_name: case.batch}))


def openvino_precision(compiled: object) -> str:
    """"bf16" or "fp32": what an OpenVINO compiled model computes its float layers in."""
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()  # type: ignore[attr-defined]
    return "bf16" if "bf" in hint else "fp16" if "16" in hint else "fp32"


def openvino_direct(hint: str | None, static: bool = False) -> Peer:
    """OpenVINO as its users call it: its defaults (or an f32 hint); static=True reshapes the model to the
    case's input shape first, as benchmark_app and OpenVINO's docs do for a shape that does not change."""
    def make(case: Case) -> Prepared:
        import openvino as ov

        core = ov.Core()
        config = {} if hint is None else {"INFERENCE_PRECISION_HINT": hint}
        model = core.read_model(str(case.onnx))
        if static:
            model.reshape(list(case.batch.shape))
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        return Prepared(lambda: request.infer({0: case.batch}), precision=openvino_precision(compiled))
    return make


def exact_backend_name() -> str:
    """"exact" where this build has it (fp32 only, measured); before it existed, `auto` never chose reduced
    precision, so `auto` is the exact choice there."""
    from artforge.runtime.backends import create_backend

    try:
        create_backend(ZOO / "repository" / "abstract_dcgan" / "1", "exact", threads=1)
    except InvalidInputError:
        return "auto"
    return "exact"


def artforge_backend(name: str) -> Peer:
    def make(case: Case) -> Prepared:
        model = load_model(case.onnx, backend=name)
        feed = {case.input_name: case.batch}
        backend = model.backend
        precision = openvino_precision(backend.compiled_model) if isinstance(backend, OpenVinoBackend) else "fp32"
        return Prepared(lambda: model.infer(feed), precision=precision, chosen=model.backend_name)
    return make


#: the row of artforge's default backend string; the summary compares it with OpenVINO's defaults
DEFAULT_ROW = "artforge default (auto)"
EXACT_ROW = "artforge exact"
BF16_ROW = "artforge auto:bf16"
OPENVINO_DEFAULTS = "OpenVINO direct, defaults"


def peers(with_compile: bool) -> list[tuple[str, Peer]]:
    rows: list[tuple[str, Peer]] = [("PyTorch eager", torch_eager)]
    if with_compile:
        rows.append(("torch.compile", torch_compiled))
    rows += [("ONNX Runtime, plain session", ort_plain)]
    try:
        import openvino  # noqa: F401

        rows += [(OPENVINO_DEFAULTS, openvino_direct(None)),
                 ("OpenVINO direct, defaults, static shape", openvino_direct(None, static=True)),
                 ("OpenVINO direct, f32 hint", openvino_direct("f32")),
                 ("OpenVINO direct, f32 hint, static shape", openvino_direct("f32", static=True))]
    except ImportError:
        pass
    names = available_backends()
    rows += [("artforge onnxruntime", artforge_backend("onnxruntime"))]
    if "openvino" in names:
        rows += [("artforge openvino:fp32", artforge_backend("openvino:fp32")),
                 ("artforge openvino:bf16", artforge_backend("openvino:bf16"))]
    if "tensorrt" in names:
        rows += [("artforge tensorrt", artforge_backend("tensorrt"))]
    exact = exact_backend_name()
    rows += [(DEFAULT_ROW, artforge_backend("auto")),
             (EXACT_ROW if exact == "exact" else f"{EXACT_ROW} (`auto`: this build has no `exact`)",
              artforge_backend(exact))]
    if "openvino" in names:
        rows += [(BF16_ROW, artforge_backend("auto:bf16"))]
    return rows


#: seconds of timed runs per fast peer in one round
BLOCK_SECONDS = 0.2
#: a peer whose single run takes longer than this is timed once per round, without an opener
SLOW_SECONDS = 0.5


def time_case(case: Case, runners: list[tuple[str, Peer]], quick: bool) -> None:
    """Time every peer on the case, interleaved: in each round every peer runs in turn, so that drift in
    the machine's speed (other processes, memory, clocks) lands on all peers alike instead of on whichever
    ran last. A fast peer's block opens with an untimed run, which absorbs the previous peer's idle threads
    (ONNX Runtime's spin after a run and measurably slow whatever runs next)."""
    n = len(case.batch)
    ready: list[tuple[dict, Runner, bool, list[float]]] = []
    for peer, make in runners:
        row: dict = {"peer": peer}
        try:
            started = time.perf_counter()
            prepared = make(case)
            run = prepared.run
            row["setup_s"] = time.perf_counter() - started
            run()
            # The second run is a warm-up too: artforge's OpenVINO backend compiles a static-shape model
            # for a shape on its second run.
            second = time.perf_counter()
            run()
            slow = time.perf_counter() - second > SLOW_SECONDS
        except Exception as exc:  # a peer that cannot run here is a result too
            row["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            print(f"  {peer:30} failed: {row['error']}", flush=True)
        else:
            row["precision"] = prepared.precision
            if prepared.chosen:
                row["chosen"] = prepared.chosen
            ready.append((row, run, slow, []))
        case.rows.append(row)
    rounds = 5 if quick or any(slow for _, _, slow, _ in ready) else 10
    for _ in range(rounds):
        for _row, run, slow, times in ready:
            if not slow:
                run()
            block = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
                if slow or time.perf_counter() - block >= (BLOCK_SECONDS / 4 if quick else BLOCK_SECONDS):
                    break
    for row, _run, _slow, times in ready:
        row.update(p50=percentile(times, 50), p90=percentile(times, 90), p99=percentile(times, 99),
                   runs=len(times), throughput=n / percentile(times, 50))
        print(f"  {row['peer']:42} p50 {row['p50'] * 1e3:9.1f} ms  {row['throughput']:8.1f}/s  "
              f"{row['precision']}{'  chose ' + row['chosen'] if row.get('chosen') else ''}", flush=True)


def artforge_throughput(case: Case) -> float:
    model = load_model(case.onnx)
    feed = {case.input_name: case.batch}
    return len(case.batch) / percentile(measure(lambda: model.infer(feed), min_runs=3, min_seconds=0.5), 50)


def best_batch(case_for: Callable[[int], Case], candidates: tuple[int, ...]) -> int:
    """The batch size where artforge's auto backend has the highest throughput."""
    return max(candidates, key=lambda n: artforge_throughput(case_for(n)))


def model_cases(name: str, path: Path, wrapper: torch.nn.Module, meta: contract.ModelMetadata,
                quick: bool) -> list[Case]:
    """Batch 1 and the best batch of one model (and, for the stylizer, each image size)."""
    input_name = contract.IO_NAMES[meta.kind][0][0]

    def case_for(n: int, side: int | None = None, label: str = "") -> Case:
        batch = make_batch(meta.kind, meta, n, side)
        return Case(name, meta.kind, label or f"batch {n}", path, wrapper, batch, input_name)

    cases = []
    if meta.kind == contract.STYLIZER:
        plan = [(256, (2, 4, 8))] if quick else [(256, (2, 4, 8)), (512, (2, 4)), (1024, ())]
        for side, candidates in plan:
            batches = [1]
            if candidates:
                batches.append(best_batch(lambda n, side=side: case_for(n, side), candidates))
            cases += [case_for(n, side, f"{side}² batch {n}") for n in batches]
        return cases
    candidates = (8, 16, 32) if meta.kind == contract.CLASSIFIER else (16, 64, 256)
    best = best_batch(case_for, candidates[:2] if quick else candidates)
    for n in (1, best):
        if meta.kind == contract.CLASSIFIER:
            label = f"{meta.input_size}² batch {n}"
        else:
            label = f"{meta.latent_size}-d latents × {n}"
        cases.append(case_for(n, label=label))
    return cases


# ------------------------------------------------------------- end to end
def make_jpeg_folder(folder: Path, count: int, size: tuple[int, int]) -> None:
    import cv2

    from artforge.zoo.photos import source_photos

    rng = np.random.default_rng(0)
    photos = list(source_photos().values())
    w, h = size
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = max(w / photo.shape[1], h / photo.shape[0]) * rng.uniform(1.0, 1.5)
        big = cv2.resize(photo, (int(photo.shape[1] * scale) + 1, int(photo.shape[0] * scale) + 1),
                         interpolation=cv2.INTER_AREA)
        y, x = rng.integers(0, big.shape[0] - h + 1), rng.integers(0, big.shape[1] - w + 1)
        sub = folder / f"set{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"photo_{i:03d}.jpg"), cv2.cvtColor(big[y:y + h, x:x + w], cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return time.perf_counter() - started


def end_to_end(work: Path, checkpoint: Path, model_dir: Path, count: int, size: tuple[int, int]) -> list[str]:
    """`artforge stylize` against the naive script on the same folder, same model, each in a fresh process."""
    folder = work / "photos"
    make_jpeg_folder(folder, count, size)
    python = sys.executable
    repo = model_dir.parent
    naive = timed([python, str(Path(__file__).parent / "naive_stylize.py"), str(checkpoint), str(folder),
                   str(work / "naive")])
    rows = [("naive script (PIL → PyTorch eager → PIL, one image at a time)", naive, None)]
    for backend in ("auto", "auto:bf16"):
        load_model(model_dir / "1", backend=backend)  # the one-time measured trial, cached, is not what we time
    for backend in ("auto", "auto:bf16", "onnxruntime"):
        out = work / f"artforge-{backend.replace(':', '-')}"
        report = work / f"report-{backend}.json"
        wall = timed([python, "-m", "artforge", "stylize", str(folder), str(out), "--repo", str(repo),
                      "--model", model_dir.name, "--backend", backend, "--quiet", "--report", str(report)])
        rows.append((f"`artforge stylize --backend {backend}`", wall, json.loads(report.read_text())))
    lines = [f"{count} JPEGs of {size[0]}×{size[1]} in 3 sub-folders, zoo model `{model_dir.name}`; wall time of "
             "the whole command in a fresh process (interpreter start, imports and model load included; auto's "
             "one-time measured trial was cached beforehand).", "",
             "| tool | wall s | images/s | vs naive | model s (tool's own count) | pipeline overhead over model |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, wall, report in rows:
        model_s = overhead = "—"
        if report:
            timings = report["timings"]
            model_s = f"{timings['model_seconds']:.2f}"
            overhead = f"{(timings['wall_seconds'] / timings['model_seconds'] - 1) * 100:+.1f} %"
        lines.append(f"| {label} | {wall:.2f} | {count / wall:.2f} | {naive / wall:.2f}× | {model_s} | {overhead} |")
    lines += ["", "Pipeline overhead = the run's wall time (after the model is loaded) over the summed time of the "
              "model's own calls, minus one: what decoding, batching, encoding and writing add that the overlap "
              "does not hide."]
    return lines


# ------------------------------------------------------------------ output
Peaks = dict[str, float]


def table(cases: list[Case], peaks: Peaks) -> list[str]:
    lines = ["| model | input | peer | precision | p50 ms | p90 ms | p99 ms | runs | items/s | vs PyTorch eager "
             "| GFLOP/s (% of that precision's matmul peak) | note |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for case in cases:
        eager = next((r for r in case.rows if r["peer"] == "PyTorch eager" and "p50" in r), None)
        fastest_peer = min((r["p50"] for r in case.rows if "p50" in r and not r["peer"].startswith("artforge")),
                           default=None)
        for r in case.rows:
            if "error" in r:
                lines.append(f"| {case.model} | {case.label} | {r['peer']} | — | — | — | — | — | — | — | — | "
                             f"cannot run here: {r['error']} |")
                continue
            speedup = f"{eager['p50'] / r['p50']:.2f}×" if eager else "—"
            gflops = "—"
            if case.flops:
                rate = case.flops / r["p50"] / 1e9
                peak = peaks.get(r["precision"])
                gflops = f"{rate:.0f} ({rate / peak * 100:.0f} %)" if peak else f"{rate:.0f}"
            note = f"chose {r['chosen']}" if r.get("chosen") and not r["peer"].startswith("artforge open") else ""
            if r["peer"].startswith("artforge") and fastest_peer and r["p50"] <= fastest_peer:
                note = (note + "; " if note else "") + "≥ every peer"
            lines.append(f"| {case.model} | {case.label} | {r['peer']} | {r['precision']} | {r['p50'] * 1e3:.1f} "
                         f"| {r['p90'] * 1e3:.1f} | {r['p99'] * 1e3:.1f} | {r['runs']} | {r['throughput']:.1f} "
                         f"| {speedup} | {gflops} | {note} |")
    return lines


def summary(cases: list[Case]) -> list[str]:
    """Per case: OpenVINO's defaults against artforge's default and `auto:bf16`; the fastest exact (fp32) peer
    against artforge's `exact`. A ratio is the peer's p50 over artforge's: 1 or more means artforge is as fast."""
    lines = ["| model | input | OpenVINO, its defaults | artforge default (`auto`) | ratio | artforge `auto:bf16` "
             "| ratio | fastest exact peer | artforge `exact` | ratio |",
             "| --- | --- | --- | --- | ---: | --- | ---: | --- | --- | ---: |"]

    def cell(row: dict | None, name: bool = False) -> str:
        if row is None:
            return "—"
        label = f"{row['peer']}: " if name else ""
        chose = f", chose {row['chosen']}" if row.get("chosen") else ""
        return f"{label}{row['p50'] * 1e3:.1f} ms ({row['precision']}{chose})"

    def ratio(peer: dict | None, ours: dict | None) -> str:
        return f"{peer['p50'] / ours['p50']:.2f}×" if peer and ours else "—"

    for case in cases:
        timed = [r for r in case.rows if "p50" in r]
        outside = [r for r in timed if not r["peer"].startswith("artforge")]
        exact_peer = min((r for r in outside if r["precision"] == "fp32"), key=lambda r: r["p50"], default=None)
        mine = {r["peer"].split(" (")[0] if r["peer"].startswith(EXACT_ROW) else r["peer"]: r for r in timed}
        ov = next((r for r in outside if r["peer"] == OPENVINO_DEFAULTS), None)
        default, bf16, exact = mine.get(DEFAULT_ROW), mine.get(BF16_ROW), mine.get(EXACT_ROW)
        lines.append(f"| {case.model} | {case.label} | {cell(ov)} | {cell(default)} | {ratio(ov, default)} "
                     f"| {cell(bf16)} | {ratio(ov, bf16)} | {cell(exact_peer, name=True)} | {cell(exact)} "
                     f"| {ratio(exact_peer, exact)} |")
    lines += ["", "ratio = the peer's p50 ÷ artforge's p50: 1.00× or more means artforge is at least as fast. "
              "The `auto:bf16` ratio is against OpenVINO's defaults (both may use bf16); `exact` is against the "
              "fastest peer that computed in fp32."]
    return lines


def plot(cases: list[Case]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(exist_ok=True)
    written = []
    for kind in dict.fromkeys(c.kind for c in cases):
        group = [c for c in cases if c.kind == kind]
        peers_seen = list(dict.fromkeys(r["peer"] for c in group for r in c.rows if "p50" in r))
        fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(group) + 3), 4.8))
        width = 0.8 / max(1, len(peers_seen))
        for i, peer in enumerate(peers_seen):
            values = [next((r["p50"] * 1e3 for r in c.rows if r["peer"] == peer and "p50" in r), np.nan)
                      for c in group]
            ax.bar(np.arange(len(group)) + i * width, values, width, label=peer)
        ax.set_xticks(np.arange(len(group)) + 0.4 - width / 2, [c.label for c in group])
        ax.set_ylabel("p50 latency per batch, ms (log)")
        ax.set_yscale("log")
        ax.set_title(f"{kind}: latency by backend and input")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = PLOTS / f"latency_{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def versions() -> str:
    import onnxruntime

    parts = [f"torch {torch.__version__} ({torch.get_num_threads()} threads)", f"onnxruntime {onnxruntime.__version__}"]
    try:
        import openvino

        parts.append(f"openvino {openvino.get_version().split('-')[0]}")
    except ImportError:
        parts.append("openvino not installed")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few runs, to check the suite")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (slow to compile)")
    parser.add_argument("--skip-e2e", action="store_true", help="leave out the end-to-end folder comparison")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="artforge-bench-"))
    try:
        run_suite(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_suite(args: argparse.Namespace, work: Path) -> None:
    kinds = args.only or list(PARTS)
    specs: list[Spec] = []
    if "classifier" in kinds:
        loaded = load_run(ZOO / "checkpoints" / "art_style.pt")
        specs.append(("art_style", ZOO / "repository" / "art_style" / "1" / "model.onnx", loaded.wrapper,
                      loaded.metadata))
    if "generator" in kinds:
        loaded = load_run(ZOO / "checkpoints" / "abstract_dcgan.pt")
        specs.append(("abstract_dcgan", ZOO / "repository" / "abstract_dcgan" / "1" / "model.onnx", loaded.wrapper,
                      loaded.metadata))
    if "stylizer" in kinds:
        path, wrapper = johnson_stylizer(work / "repo")
        specs.append(("johnson (width 1.0)", path, wrapper, load_model(path).metadata))
    if specs:
        peer_suite(args, specs)
    if not args.skip_e2e and "end-to-end" in kinds:
        count, size = (12, (320, 240)) if args.quick else (48, (640, 480))
        e2e = end_to_end(work, ZOO / "checkpoints" / "swirl.pt", ZOO / "repository" / "swirl", count, size)
        write_section("end-to-end", "\n".join(["## End to end: `artforge stylize` on a folder vs a naive script", "",
                                               f"Command: `{command_line()}`  ", f"Machine: {machine()}.", ""] + e2e))
        print("\n".join(e2e))
    if "precision" in kinds:
        from bench_precision import section

        write_section("precision", "\n".join(section(args.quick)))
    print("wrote benchmarks/RESULTS.md")


Spec = tuple[str, Path, torch.nn.Module, contract.ModelMetadata]


def peer_suite(args: argparse.Namespace, specs: list[Spec]) -> None:
    n = 2048 if args.quick else 4096
    fp32_peak, fp32_by = fp32_matmul_peak(n)
    peaks: Peaks = {"fp32": fp32_peak}
    bf16 = bf16_matmul_peak(n)
    if bf16:
        peaks["bf16"] = bf16[0]
    print(f"matmul peaks: fp32 {fp32_peak:.0f} GFLOP/s ({fp32_by})"
          + (f", bf16 {bf16[0]:.0f} GFLOP/s ({bf16[1]})" if bf16 else ", no bf16 arithmetic"), flush=True)
    runners = peers(with_compile=not args.no_compile)
    cases = [case for spec in specs for case in model_cases(*spec, quick=args.quick)]
    for case in cases:
        if case.kind == contract.STYLIZER:
            case.flops = count_flops(case.wrapper, case.batch)
        print(f"{case.model} {case.label}", flush=True)
        time_case(case, runners, args.quick)

    bf16_line = (f"bf16 **{bf16[0]:.0f} GFLOP/s** (best of {bf16[1]})" if bf16
                 else "no bf16 arithmetic on this CPU")
    lines = ["## Benchmark suite: every peer, side by side", "",
             f"Command: `{command_line()}`  ",
             f"Machine: {machine()}; {versions()}.  ",
             f"Measured matrix-product peaks ({n}²): fp32 **{fp32_peak:.0f} GFLOP/s** (best of {fp32_by}); "
             f"{bf16_line}.", "",
             "All peers take the same contract tensors (uint8 NHWC images or float latents) and return the contract's "
             "outputs; PyTorch runs the export wrapper the ONNX graph was verified against. Times are per batch; "
             "items/s = batch ÷ p50. Each row names the precision it computed in: `OpenVINO direct, defaults` runs "
             "bfloat16 on CPUs with AVX512-BF16 or AMX; artforge's default is whatever `auto` decides on this "
             "machine (its reason says why), `exact` is fp32 only. Attained GFLOP/s is against the peak of the "
             "row's own precision. `static shape` rows compile OpenVINO for the case's one input shape; artforge's "
             "OpenVINO backend does the same for a shape it sees again (bounded; docs/decisions.md).", ""]
    lines += ["### artforge against OpenVINO's defaults and the fastest exact peer", ""] + summary(cases)
    lines += ["", "### Every peer", ""] + table(cases, peaks)
    try:
        written = plot(cases)
    except ImportError:  # matplotlib is a plotting extra; the tables are the result
        lines += ["", "Plots: none (matplotlib is not installed)."]
    else:
        lines += ["", "Plots: " + ", ".join(f"[{p.name}](plots/{p.name})" for p in written)]
    write_section("suite", "\n".join(lines))
    (Path(__file__).parent / "suite.json").write_text(json.dumps(
        {"peaks_gflops": peaks, "cases": [{"model": c.model, "kind": c.kind, "input": c.label, "flops": c.flops,
                                           "rows": c.rows} for c in cases]}, indent=1))


if __name__ == "__main__":
    main()
