"""Meta-learned initialisation vs random initialisation: how fast does a style network for a new style get good?

For each held-out style image (never in meta-training): a TransformerNet trained from random
initialisation for N steps, the meta-learned initialisation adapted for the same N steps (what
`artforge adapt-style` does), and, with --converge-steps M, a random-init network trained for M steps
(the zoo's recipe: 1600). Reported: style, content and total loss on held-out photos (never trained
on) through the same loss network, layers and weights as training, and the wall time of each; a curve
of held-out loss against training seconds (benchmarks/plots/meta_style_curve_<style>.png) and a
contact sheet (benchmarks/plots/meta_style_sheet.png). Evaluation time is left out of the wall times.

One command (meta-trains an initialisation first unless --init names one; resumable work folder):

    python benchmarks/bench_meta_style.py                     # the defaults: MetaStyleConfig's, N=200
    python benchmarks/bench_meta_style.py --converge-steps 1600 --one-shot   # the long one, on a quiet machine

Photos: crops of the scikit-image/scikit-learn photos; rocket and motorcycle are held out for evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import command_line, machine, write_section  # noqa: E402

from artforge.models.style_net import TransformerNet  # noqa: E402
from artforge.runtime.grid import tile_grid  # noqa: E402
from artforge.runtime.imageio import write_image  # noqa: E402
from artforge.training import common as train_common  # noqa: E402
from artforge.training import meta_style  # noqa: E402
from artforge.training.configs import MetaStyleConfig, StyleConfig  # noqa: E402
from artforge.training.data import list_images  # noqa: E402
from artforge.training.losses import PerceptualLoss, build_loss_network  # noqa: E402
from artforge.training.style import RESIDUAL_BLOCKS, ContentSampler, _square_crop, _to_tensor  # noqa: E402
from artforge.zoo.painting import paint_style_image  # noqa: E402
from artforge.zoo.photos import CONTENT_PHOTOS, source_photos  # noqa: E402
from artforge.zoo.seeds import item_rng  # noqa: E402

PLOTS = ROOT / "benchmarks" / "plots"
HELD_OUT_PHOTOS = ("rocket", "motorcycle")
#: a family meta-training never saw (pointillism) and a seen family's unseen image (the zoo's mosaic, seed 0)
HELD_OUT_STYLES = ("pointillism:chelsea", "mosaic")


def make_photos(work: Path, size: int) -> tuple[Path, Path]:
    """(training crops folder, held-out crops folder), made once from the shipped source photos."""
    train, held = work / "photos" / "train", work / "photos" / "held_out"
    if (work / "photos" / "done").exists():
        return train, held
    photos = source_photos()
    for folder, names, per in ((train, [n for n in CONTENT_PHOTOS if n not in HELD_OUT_PHOTOS], 12),
                               (held, list(HELD_OUT_PHOTOS), 4)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            for i in range(per):
                crop = _square_crop(np.ascontiguousarray(photos[name]), size * 2, item_rng(0, "bench", name, i))
                write_image(folder / f"{name}_{i}.jpg", crop, quality=95)
    (work / "photos" / "done").write_text("")
    return train, held


def curve(net: TransformerNet, criterion: PerceptualLoss, sampler: ContentSampler, steps: int, lr: float,
          held_out: torch.Tensor, every: int) -> tuple[list[dict[str, float]], float]:
    """Adam on the style like training (same batches for every start); held-out losses every `every` steps.

    Returns (points: step, seconds, total, style, content; training seconds)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    target = criterion.content_target(held_out)

    def evaluate(step: int, seconds: float) -> dict[str, float]:
        net.eval()
        with torch.no_grad():
            losses = criterion(net(held_out), target)
        net.train()
        return {"step": step, "seconds": seconds, **{k: float(losses[k]) for k in ("total", "style", "content")}}

    points, seconds = [evaluate(0, 0.0)], 0.0
    net.train()
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        content = _to_tensor(sampler.batch(step, sampler_batch(sampler)), held_out.device)
        losses = criterion(net(content), criterion.content_target(content))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        seconds += time.perf_counter() - t0
        if step % every == 0 or step == steps:
            points.append(evaluate(step, seconds))
    return points, seconds


def sampler_batch(sampler: ContentSampler) -> int:
    return sampler.batch_size  # type: ignore[attr-defined]


def plot_curve(series: dict[str, list[dict[str, float]]], title: str, path: Path,
               target: tuple[float, float] | None = None) -> None:
    """Held-out total loss against training seconds, one line per start (OpenCV: no plotting library needed).

    target: (loss, seconds) of the issue's target box, drawn dashed: the converged loss +10 % and 1/5 of its time."""
    w, h, m = 720, 420, 60
    image = np.full((h, w, 3), 255, np.uint8)
    all_points = [p for points in series.values() for p in points]
    tmax = max(p["seconds"] for p in all_points) or 1.0
    lo, hi = min(p["total"] for p in all_points), max(p["total"] for p in all_points)
    lo, hi = np.log10(lo), np.log10(hi) + 1e-6

    def xy(p: dict[str, float]) -> tuple[int, int]:
        x = m + (w - 2 * m) * p["seconds"] / tmax
        y = h - m - (h - 2 * m) * (np.log10(p["total"]) - lo) / (hi - lo)
        return int(x), int(y)

    cv2.rectangle(image, (m, m), (w - m, h - m), (0, 0, 0), 1)
    if target is not None:
        loss, seconds = target
        x, y = xy({"seconds": seconds, "total": loss})
        for start in range(m, x, 12):  # dashed: the target is loss below y before time x
            cv2.line(image, (start, y), (min(start + 6, x), y), (120, 120, 120), 1)
        for start in range(y, h - m, 12):
            cv2.line(image, (x, start), (x, min(start + 6, h - m)), (120, 120, 120), 1)
        cv2.putText(image, "target: converged +10% in 1/5 of its time", (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (120, 120, 120), 1, cv2.LINE_AA)
    colors = [(200, 60, 30), (30, 120, 200), (40, 160, 60), (140, 60, 170)]
    for i, (label, points) in enumerate(series.items()):
        pts = np.array([xy(p) for p in points], np.int32)
        cv2.polylines(image, [pts], False, colors[i % len(colors)], 2, cv2.LINE_AA)
        cv2.putText(image, label, (m + 10, m + 20 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colors[i % len(colors)], 1,
                    cv2.LINE_AA)
    cv2.putText(image, title, (m, m - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"training seconds (0 .. {tmax:.0f})", (w // 2 - 90, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"held-out total loss, log ({10 ** lo:.3g} .. {10 ** hi:.3g})", (5, m - 40),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    write_image(path, image)


def stylize(net: TransformerNet, image: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        out = net(_to_tensor(image[None], torch.device("cpu")))
    return out.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def main() -> None:
    defaults = MetaStyleConfig(data="", out="")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench-meta-style", help="resumable work folder")
    parser.add_argument("--init", type=Path, default=None, help="meta-style run to test (default: meta-train one)")
    parser.add_argument("--n", type=int, default=None, help="adaptation steps N (default: the init's adapt_steps)")
    parser.add_argument("--converge-steps", type=int, default=0,
                        help="also train from random init for this many steps (the zoo's recipe: 1600); 0: skip")
    parser.add_argument("--one-shot", action="store_true",
                        help="also time a complete `artforge adapt-style ... --repo` run on the first style")
    parser.add_argument("--every", type=int, default=10, help="held-out evaluation every N steps")
    parser.add_argument("--styles", default=",".join(HELD_OUT_STYLES), help="held-out style images, by zoo name")
    meta = parser.add_argument_group("meta-training when no --init (MetaStyleConfig's fields)")
    for f in fields(MetaStyleConfig):
        if f.name in {"data", "out", "styles", "device", "resume", "progress", "max_steps", "loss_weights"}:
            continue
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            meta.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", default=value)
        elif value is not None:
            meta.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the RESULTS.md section from WORK/results.json without measuring again")
    parser.add_argument("--label", default="", help="name of the RESULTS.md section's variant (several can coexist)")
    args = parser.parse_args()

    torch.manual_seed(0)
    work = args.work
    if args.report_only:
        saved = json.loads((work / "report.json").read_text())
        init = Path(saved["init"])
        report(args, init, train_common.load_artifact(init)["provenance"], saved["steps"], saved["rows"],
               saved["meta_seconds"], saved["one_shot"], saved["command"], saved.get("load"))
        return
    train_photos, held_photos = make_photos(work, args.image_size)
    meta_fields = {f.name for f in fields(MetaStyleConfig)}
    if args.init is None:
        chosen = {k: v for k, v in vars(args).items() if k in meta_fields - {"data", "out", "styles"}}
        cfg = MetaStyleConfig(data=str(train_photos), out=str(work / "meta"), progress=True, **chosen)
        if cfg.second_order:
            cfg = replace(cfg, out=str(work / "meta_second_order"))
        started = time.perf_counter()
        init = meta_style.train(cfg)
        meta_seconds = json.loads((init / train_common.METRICS).read_text()).get("seconds_per_step", 0) * cfg.steps
        print(f"meta-training: {cfg.steps} steps, {time.perf_counter() - started:.0f} s this invocation")
    else:
        init, meta_seconds = args.init, None
    artifact = train_common.load_artifact(init)
    provenance = artifact["provenance"]
    settings = provenance["style_settings"]
    steps = args.n or provenance["adapt"]["steps"]
    lr = provenance["adapt"]["lr"]
    style_cfg = StyleConfig(style="", data="", out="", **{k: v for k, v in settings.items()
                                                           if k in {f.name for f in fields(StyleConfig)}})
    loss_net = build_loss_network(style_cfg.loss_network, style_cfg.loss_weights)
    weights = style_cfg.loss_weight_values()
    held_images = [_square_crop(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), style_cfg.image_size, None)
                   for p in list_images(held_photos)]
    held_out = _to_tensor(np.stack(held_images), torch.device("cpu"))
    sampler = ContentSampler(list_images(train_photos), style_cfg.image_size, seed=0)
    sampler.batch_size = style_cfg.batch_size  # type: ignore[attr-defined]

    rows, sheet = [], []
    for name in args.styles.split(","):
        style_image = paint_style_image(name, size=max(32, style_cfg.style_size), seed=0)
        criterion = PerceptualLoss(loss_net, _to_tensor(style_image[None], torch.device("cpu")), weights)
        starts = {"random init": None, "meta init": artifact["state_dict"]}
        results, nets = {}, {}
        for label, state in starts.items():
            torch.manual_seed(0)
            net = TransformerNet(width=style_cfg.width, residual_blocks=RESIDUAL_BLOCKS)
            if state is not None:
                net.load_state_dict(state)
            print(f"{name}: {label}, {steps} steps", flush=True)
            results[label] = curve(net, criterion, sampler, steps, lr, held_out, args.every)
            nets[label] = net
        if args.converge_steps:
            torch.manual_seed(0)
            net = TransformerNet(width=style_cfg.width, residual_blocks=RESIDUAL_BLOCKS)
            print(f"{name}: random init, {args.converge_steps} steps (convergence)", flush=True)
            results["converged"] = curve(net, criterion, sampler, args.converge_steps, lr, held_out,
                                         max(args.every, args.converge_steps // 40))
            nets["converged"] = net
        PLOTS.mkdir(exist_ok=True)
        converged = results.get("converged")
        target = (converged[0][-1]["total"] * 1.1, converged[1] / 5) if converged else None
        plot_curve({k: v[0] for k, v in results.items()}, f"{name}: held-out loss vs training time",
                   PLOTS / f"meta_style_curve_{name.replace(':', '_')}.png", target)
        photo = held_images[0]
        thumb = cv2.resize(style_image, photo.shape[1::-1], interpolation=cv2.INTER_AREA)
        sheet += [thumb, photo] + [stylize(nets[k], photo) for k in results]
        for label, (points, seconds) in results.items():
            final = points[-1]
            rows.append({**final, "style_image": name, "start": label, "steps": final["step"], "seconds": seconds,
                         "points": points})
        meta_final, random_final = results["meta init"][0][-1], results["random init"][0][-1]
        print(f"{name}: held-out total after {steps} steps: meta {meta_final['total']:.4g}, "
              f"random {random_final['total']:.4g}", flush=True)
    columns = 2 + len(results)
    write_image(PLOTS / "meta_style_sheet.png", tile_grid(sheet, columns=columns))

    one_shot = None
    if args.one_shot:
        style_file = work / "one_shot_style.png"
        write_image(style_file, paint_style_image(args.styles.split(",")[0], size=256, seed=0))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "artforge", "adapt-style", str(style_file), "--init", str(init),
                        "--repo", str(work / "repo"), "--name", "one_shot", "--out", str(work / "one_shot"),
                        "--no-resume", "--overwrite", "--no-progress"], check=True, cwd=ROOT)
        one_shot = time.perf_counter() - t0
    (work / "report.json").write_text(json.dumps({"init": str(init), "steps": steps, "rows": rows,
                                                  "meta_seconds": meta_seconds, "one_shot": one_shot,
                                                  "command": command_line(), "load": os.getloadavg()[1]},
                                                 indent=1))
    report(args, init, provenance, steps, rows, meta_seconds, one_shot, command_line(), os.getloadavg()[1])


def report(args: argparse.Namespace, init: Path, provenance: dict, steps: int, rows: list[dict],
           meta_seconds: float | None, one_shot: float | None, command: str, load: float | None) -> None:
    meta = provenance["meta"]
    settings = provenance["style_settings"]
    lines = [f"## Meta-learned style initialisation: adaptation vs training from scratch{args.label}", "",
             f"Command: `{command}`", "", f"Machine: {machine()}, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads)"
             + (f", 5-minute load average {load:.1f} at the end" if load is not None else "")
             + ". Timings on a shared, busy machine are noisy; the loss at a step count is not.", "",
             f"Initialisation: `{init}`, {provenance['steps']} outer steps"
             + (f" ({meta_seconds / 60:.1f} min)" if meta_seconds else "")
             + f"; {json.dumps(meta)}; network width {settings['width']}, {settings['image_size']} px crops, "
             f"style side {settings['style_size']}, batch {settings['batch_size']}, loss network "
             f"{settings['loss_network']}.", "",
             f"Held-out photos: {', '.join(HELD_OUT_PHOTOS)} (never trained on). Held-out styles: {args.styles} "
             "(pointillism is a family meta-training never saw; mosaic is the zoo's own image, seed 0, which "
             "meta-training never drew). N = " + str(steps) + " steps, Adam lr " + str(provenance["adapt"]["lr"])
             + ".", "",
             "| style | start | steps | train s | held-out total | style | content |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['style_image']} | {r['start']} | {r['steps']} | {r['seconds']:.0f} | {r['total']:.4g} | "
                     f"{r['style']:.4g} | {r['content']:.4g} |")
    lines.append("")
    for style in dict.fromkeys(r["style_image"] for r in rows):
        by = {r["start"]: r for r in rows if r["style_image"] == style}
        meta_r, rand_r = by["meta init"], by["random init"]
        # The first held-out evaluation at which random init matches meta init's loss after N steps.
        catch = next((p for p in rand_r["points"] if p["total"] <= meta_r["total"]), None)
        text = (f"- {style}: after {meta_r['steps']} steps meta init's held-out loss is "
                f"{meta_r['total'] / rand_r['total']:.2f}x random init's; random init "
                + (f"reaches it at step {catch['step']}" if catch else f"does not reach it in {rand_r['steps']} steps"))
        if "converged" in by:
            conv = by["converged"]
            gap = meta_r["total"] / conv["total"] - 1
            time_ratio = meta_r["seconds"] / conv["seconds"]
            text += (f"; against {conv['steps']} steps from scratch: loss {gap:+.1%} (target within +10%), "
                     f"wall time {time_ratio:.2f}x (target at most 0.20x)")
        lines.append(text + ".")
    if one_shot is not None:
        lines += ["", f"A complete `artforge adapt-style STYLE --repo ...` (estimate, {steps} steps, export with "
                  f"parity check, model card): {one_shot:.0f} s (target: under 300 s)."]
    lines += ["", "Curves: `benchmarks/plots/meta_style_curve_<style>.png`; outputs on a held-out photo (style, "
              "photo, random init, meta init" + (", converged" if args.converge_steps else "")
              + "): `benchmarks/plots/meta_style_sheet.png`."]
    write_section(f"meta_style{args.label}", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
