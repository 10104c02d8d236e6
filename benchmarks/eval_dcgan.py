"""DCGAN quality: the shipped abstract_dcgan against DCGANs trained with the new
tiles and each piece of training practice, measured on held-out tiles.

Every model draws the same seeded latents; the measures (artforge/quality/
gan_metrics.py) compare them with held-out tiles (zoo/datasets.art_tiles: the
test split, cut from paintings and photos no training run sees) in ImageNet
EfficientNet-Lite0 features: Fréchet distance (lower is better), precision,
recall and the near-duplicate pair rate (real tiles: 1 %). The first row is
real data: as many training tiles, measured the same way, which is how close
a generator that reproduced its training set would come.

    python benchmarks/eval_dcgan.py [--work DIR] [--recipes A_baseline,F_all | --recipes none] [--steps 500]
        [--zoo-recipe] [--compare NAME=REPO ...]

`--compare` adds the abstract_dcgan of another repository (an older zoo, say
`git archive COMMIT zoo/repository`), drawn from the same latents.

The ablation runs are small (width 16, batch 32, --steps steps) so that they
fit a shared 2-core machine; `--zoo-recipe` also trains the zoo's own settings
(artforge/zoo/catalog.py: width 32, 2000 steps; ~25 min on 2 idle cores).
Runs resume, so rerunning after an interruption continues. Writes the
`dcgan` section of benchmarks/RESULTS.md and benchmarks/plots/dcgan_grid.jpg
(64 samples of the shipped model next to 64 of the best run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.models import build  # noqa: E402
from artforge.quality.gan_metrics import FeatureExtractor, feature_stats, score_features  # noqa: E402
from artforge.runtime import Repository, write_image  # noqa: E402
from artforge.runtime.grid import tile_grid  # noqa: E402
from artforge.training import common, dcgan  # noqa: E402
from artforge.training.configs import DCGANConfig  # noqa: E402
from artforge.training.data import list_images, read_rgb  # noqa: E402
from artforge.zoo import datasets  # noqa: E402
from artforge.zoo.catalog import DCGAN_PRACTICE, SEED, TILE_SETTINGS, ZOO  # noqa: E402
from artforge.zoo.evaluation import GENERATOR_EVAL_SEED, evaluation_samples  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "zoo" / "repository"
GRID = Path(__file__).resolve().parent / "plots" / "dcgan_grid.jpg"

#: the paper's recipe, spelled out so that changed DCGANConfig defaults do not change the baseline
_PAPER: dict[str, Any] = dict(loss="bce", spectral_norm=False, lr=2e-4, lr_d=None, ema=0.0, augment="")
_HINGE_SN = dict(loss="hinge", spectral_norm=True)
_TTUR = dict(lr=1e-4, lr_d=4e-4)
_EMA = dict(ema=0.999)
_AUGMENT = dict(augment="color,translation,cutout")
#: run folder -> (what it adds, DCGANConfig settings); cumulative except "paper + EMA"
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "A_baseline": ("paper (BCE, Adam 2e-4 both)", {}),
    "E_ema": ("paper + EMA of G", _EMA),
    "C_sn_hinge_ttur": ("hinge + spectral norm + TTUR (G 1e-4, D 4e-4)", {**_HINGE_SN, **_TTUR}),
    "D_sn_hinge_ttur_ema": ("... + EMA of G", {**_HINGE_SN, **_TTUR, **_EMA}),
    "F_all": ("... + EMA + DiffAugment (colour, translation, cutout)", {**_HINGE_SN, **_TTUR, **_EMA, **_AUGMENT}),
}
#: the ablation scale
SMALL = dict(ngf=16, ndf=16, batch_size=32, log_every=25, checkpoint_every=100, eval_every=100, eval_samples=256)


def make_tiles(work: Path) -> Path:
    """The zoo's tiles, stylized by the shipped style networks."""
    repo = Repository(SHIPPED)
    stylizers = {m.name: repo.stylizer(m.name).stylize for m in ZOO if m.kind == "style" and m.name in repo.names()}
    tiles = work / "tiles"
    datasets.art_tiles(tiles, seed=SEED, stylizers=stylizers, **TILE_SETTINGS["full"], progress=False)
    return tiles


def generate_onnx(count: int, repo: Path = SHIPPED,
                  seed: int = GENERATOR_EVAL_SEED) -> tuple[np.ndarray, dict[str, Any]]:
    """`count` images from REPO's abstract_dcgan (the zoo build's evaluation latents unless another seed),
    and its provenance."""
    model = Repository(repo).generator("abstract_dcgan")
    return evaluation_samples(model, count, seed), model.metadata.provenance


def describe(p: dict[str, Any]) -> str:
    """What a generator's provenance says it was trained with."""
    recipe = ("paper recipe" if p.get("loss", "bce") == "bce" and not p.get("spectral_norm")
              else f"{p.get('loss')} loss, spectral norm {p.get('spectral_norm')}, lr {p.get('lr')}/{p.get('lr_d')}, "
                   f"EMA {p.get('ema')}, augment {p.get('augment')}")
    return f"ngf/ndf {p.get('ngf')}/{p.get('ndf')}, batch {p.get('batch_size')}, {recipe}"


def generate_run(run: Path, count: int, seed: int = GENERATOR_EVAL_SEED) -> np.ndarray:
    """The run's exported generator (model.pt) on the same latents the runtime would draw."""
    from artforge import contract
    artifact = common.load_artifact(run)
    generator = build(artifact["kind"], artifact["arch"])
    generator.load_state_dict(artifact["state_dict"])
    generator.eval()

    class Checkpoint:
        """The runtime generator's generate(count, seed), in PyTorch, so evaluation_samples draws as it does."""

        @staticmethod
        def generate(n: int, seed: int) -> np.ndarray:
            z = torch.from_numpy(contract.latents(n, artifact["latent_size"], seed))
            with torch.no_grad():
                return ((generator(z).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    return evaluation_samples(Checkpoint, count, seed)


def write_grid(left: np.ndarray, right: np.ndarray) -> None:
    """Two 8x8 grids of 64 samples side by side."""
    GRID.parent.mkdir(parents=True, exist_ok=True)
    a, b = tile_grid(list(left), columns=8), tile_grid(list(right), columns=8)
    write_image(GRID, np.concatenate([a, np.full((a.shape[0], 16, 3), 255, np.uint8), b], axis=1))


def train(work: Path, tiles: Path, name: str, settings: dict[str, Any]) -> tuple[Path, str]:
    """Train (or reopen a finished) run; returns it and its steps."""
    out = work / "runs" / f"{name}_{settings['epochs']}ep"
    run = dcgan.train(DCGANConfig(data=str(tiles / "train"), out=str(out), eval_data=str(tiles / "test"),
                                  seed=SEED, progress=False, **settings))
    return run, str(json.loads((run / common.METRICS).read_text())["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/artforge-eval-dcgan"),
                        help="tiles, training runs and cached features (reused by a rerun)")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated, of {', '.join(RECIPES)}; 'none' trains no ablation")
    parser.add_argument("--steps", type=int, default=500, help="ablation training steps (batch 32)")
    parser.add_argument("--samples", type=int, default=1000, help="generated and held-out real images per measure")
    parser.add_argument("--zoo-recipe", action="store_true", help="also train the zoo's own DCGAN settings")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=REPO",
                        help="also measure REPO's abstract_dcgan under NAME (repeatable)")
    parser.add_argument("--latent-seed", type=int, default=GENERATOR_EVAL_SEED,
                        help="seed of the generated images' latents (another seed: another draw, its own section)")
    args = parser.parse_args()
    recipes = [] if args.recipes in ("", "none") else args.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    compare = dict(item.split("=", 1) for item in args.compare if "=" in item)
    if unknown or len(compare) != len(args.compare):
        parser.error(f"unknown recipe(s) {unknown}" if unknown else "--compare takes NAME=REPO")
    work = args.work
    tiles = make_tiles(work)
    extractor = FeatureExtractor()
    cache = work / f"real_features_{args.samples}.npy"
    if cache.is_file():
        real = np.load(cache)
    else:
        real = extractor(np.stack([read_rgb(p) for p in list_images(tiles / "test")[:args.samples]]))
        np.save(cache, real)
    real_stats = feature_stats(real)

    rows: list[tuple[str, str, dict[str, Any], str]] = []
    training_tiles = list_images(tiles / "train")
    picked = training_tiles[:args.samples]  # as the zoo build's evaluation picks them (each tile is a random crop)
    rows.append(("real: training tiles", f"{len(picked)} of the tiles every run trains on, not generated",
                 score_features(real, extractor(np.stack([read_rgb(path) for path in picked])), real_stats), "-"))
    grids: dict[str, np.ndarray] = {}
    for name, repo in {"shipped zoo abstract_dcgan": SHIPPED, **compare}.items():
        images, provenance = generate_onnx(args.samples, Path(repo), args.latent_seed)
        grids.setdefault("shipped", images[:64])  # the first: the shipped generator
        rows.append((name, describe(provenance), score_features(real, extractor(images), real_stats),
                     str(provenance.get("steps", "?"))))
    epochs = max(1, round(args.steps * 32 / len(training_tiles)))
    for name in recipes:
        what, practice = RECIPES[name]
        run, steps = train(work, tiles, name, {**SMALL, "epochs": epochs, **_PAPER, **practice})
        images = generate_run(run, args.samples, args.latent_seed)
        grids[name] = images[:64]
        rows.append((name, what, score_features(real, extractor(images), real_stats), steps))
    if args.zoo_recipe:
        model = next(m for m in ZOO if m.kind == "dcgan")
        run, steps = train(work, tiles, "zoo_recipe", {**model.settings})
        images = generate_run(run, args.samples, args.latent_seed)
        grids["zoo_recipe"] = images[:64]
        rows.append(("zoo_recipe", f"the catalog's settings ({model.settings['ngf']} wide, "
                     f"{model.settings['epochs']} epochs): {', '.join(f'{k}={v}' for k, v in DCGAN_PRACTICE.items())}",
                     score_features(real, extractor(images), real_stats), steps))

    # The grid shows the candidate recipe (the zoo's if trained, else the last one asked for), not the lowest FD:
    # a generator collapsed to one grey image can score a lower FD than an unfinished varied one.
    shown = rows[-1][0] if recipes or args.zoo_recipe else None
    if shown is not None:
        write_grid(grids["shipped"], grids[shown])

    base_fd = rows[1][2]["fd"]
    lines = ["## DCGAN quality on held-out tiles", "", f"Command: `{command_line()}`", "",
             f"Machine: {machine()}.", "",
             f"{args.samples} generated images (latents seeded {args.latent_seed}) against {len(real)} held-out "
             "tiles, in ImageNet EfficientNet-Lite0 features at 128 px (artforge/quality/gan_metrics.py)."
             + (f" Ablation runs: ngf/ndf 16, batch 32, {epochs} epochs of the new tiles." if recipes else ""), "",
             "| run | what | FD | FD vs shipped | precision | recall | near-dup pairs | steps |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, what, s, steps in rows:
        lines.append(f"| {name} | {what} | {s['fd']:.1f} | {s['fd'] / base_fd:.2f}x | {s['precision']:.1%} | "
                     f"{s['recall']:.1%} | {s['duplicates']:.2%} | {steps} |")
    if shown is not None:
        lines += ["", f"![64 samples: shipped (left) and {shown} (right)](plots/{GRID.name})"]
    # Without ablations it is a comparison of zoo generators, kept beside (not over) the ablation's section.
    section = "dcgan" if recipes or args.zoo_recipe else "dcgan-zoo"
    write_section(section if args.latent_seed == GENERATOR_EVAL_SEED else f"{section}-seed-{args.latent_seed}",
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
