"""`artforge zoo build`: make the data, train, export and document every model
of the shipped default zoo, from photos that scikit-image and scikit-learn ship.

Each step is resumable: datasets already made are reused, training runs resume
from their checkpoints, and `--only` rebuilds a subset. torch is imported only
when a model is trained or exported.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from artforge.files import write_bytes_atomic, write_json_atomic
from artforge.runtime import Repository
from artforge.runtime.grid import tile_grid
from artforge.runtime.imageio import read_image, write_image
from artforge.training import configs
from artforge.zoo import datasets
from artforge.zoo.catalog import SEED, TILE_SETTINGS, ZOO, ZooModel
from artforge.zoo.evaluation import (
    append_evaluation,
    append_generator_evaluation,
    append_style_evaluation,
    evaluate_classifier,
    evaluate_generator,
    evaluate_stylizer,
)
from artforge.zoo.painting import STYLE_IMAGES, paint_style_image
from artforge.zoo.photos import source_photos
from artforge.zoo.readme import contact_sheet, write_index
from artforge.zoo.stylized_dataset import dataset_folder_name, render_stylized_dataset, stylizer_fingerprint


def _make_data(work: Path, out: Path, quick: bool) -> dict[str, Any]:
    data = work / "data"
    done = data / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    for name in STYLE_IMAGES:
        image = paint_style_image(name, size=256 if quick else 512, seed=SEED)
        write_image(out / "styles" / f"{name.replace(':', '_')}.jpg", image, quality=90)
    summary = {
        "content_images": len(datasets.content_images(data / "content", seed=SEED, count=16 if quick else 400,
                                                      size=64 if quick else 256)),
    }
    datasets.sample_photos(out / "samples")
    write_json_atomic(done, summary)
    return summary


def _zoo_stylizers(out: Path) -> list[str]:
    repo = out / "repository"
    return [m.name for m in ZOO if m.kind == "style" and (repo / m.name).is_dir()]


def _tiles_folder(work: Path, out: Path) -> Path:
    # Named by the weights of the stylizers it used (as the classifier's data is), so a build with retrained
    # or other style networks makes other tiles, and so another DCGAN run.
    return work / "data" / f"art_tiles-{stylizer_fingerprint(out / 'repository', _zoo_stylizers(out))}"


def _make_tiles(work: Path, out: Path, quick: bool) -> Path:
    """The DCGAN's tiles, made when it is trained: they include photos stylized by the zoo's
    style networks, which the catalog trains before it."""
    repo = Repository(out / "repository")
    stylizers = {name: repo.stylizer(name).stylize for name in _zoo_stylizers(out)}
    tiles = _tiles_folder(work, out)
    summary = datasets.art_tiles(tiles, seed=SEED, stylizers=stylizers, **TILE_SETTINGS["quick" if quick else "full"])
    write_json_atomic(out / "data_tiles.json", summary)
    return tiles


def _stylized_data(work: Path, repo: Path, quick: bool) -> tuple[Path, dict[str, Any]]:
    """The classifier's data, rendered by every stylizer the repository holds now
    (so it follows the zoo: a rebuilt or added stylizer gives a new folder)."""
    stylizers = Repository(repo).names_of_kind("stylizer")
    folder = work / "data" / dataset_folder_name(repo, stylizers)
    sizes: dict[str, Any] = dict(crops_per_photo=1, size=96) if quick else {}
    return folder, render_stylized_dataset(folder, repo, stylizers, seed=SEED, **sizes)


def _train(model: ZooModel, work: Path, out: Path, quick: bool, stylized: Path | None) -> Path:
    settings = {**(model.quick if quick else model.settings), "seed": SEED, "out": str(work / "runs" / model.name)}
    data = work / "data"
    if model.kind == "classifier":
        from artforge.training import classifier
        assert stylized is not None, "the classifier trains on the stylized dataset"
        # Other stylizers make another dataset, and so another run (a run refuses to resume on other data).
        settings["out"] = f"{settings['out']}-{stylized.name}"
        # Validation (early stopping, best epoch, calibration) and the final
        # evaluation each use photos of their own, never trained on.
        return classifier.train(configs.ClassifierConfig(data=str(stylized / "train"), val=str(stylized / "val"),
                                                         **settings))
    if model.kind == "dcgan":
        from artforge.training import dcgan
        tiles = _make_tiles(work, out, quick)
        settings["out"] = f"{settings['out']}-{tiles.name}"  # a run refuses to resume on other data
        return dcgan.train(configs.DCGANConfig(data=str(tiles / "train"), eval_data=str(tiles / "test"), **settings))
    if model.kind == "meta_style":
        from artforge.training import meta_style
        return meta_style.train(configs.MetaStyleConfig(data=str(data / "content"), **settings))
    style_image = _style_image(model, out, quick)
    if model.kind == "adapt_style":
        from artforge.training import adapt_style
        init = work / "runs" / "meta_style"
        if not (init / "model.pt").is_file():
            init = _train(next(m for m in ZOO if m.kind == "meta_style"), work, out, quick, None)
        return adapt_style.adapt(configs.AdaptStyleConfig(style=str(style_image), init=str(init),
                                                          data=str(data / "content"), **settings))
    from artforge.training import style
    return style.train(configs.StyleConfig(style=str(style_image), data=str(data / "content"), **settings))


def _gatys_reference(model: ZooModel, work: Path, out: Path, quick: bool) -> Callable[[str, np.ndarray], np.ndarray]:
    """Gatys et al.'s optimisation of a photo in `model`'s style, the quality reference the contact sheet shows
    beside the networks (GatysConfig's defaults; cached in work/gatys by photo, style image and size)."""
    from artforge.training.gatys import gatys

    style = _style_image(model, out, quick)
    key = hashlib.sha256(style.read_bytes()).hexdigest()[:12]
    folder = work / "gatys"

    def make(name: str, photo: np.ndarray) -> np.ndarray:
        cached = folder / f"{name}_{key}_{photo.shape[0]}.png"
        if not cached.is_file():
            source = folder / f"{name}_{photo.shape[0]}.png"
            write_image(source, photo)
            options = dict(steps=2, size=64) if quick else dict(size=max(photo.shape[:2]))
            write_image(cached, gatys(source, style, seed=SEED, progress=False, **options))
        return read_image(cached)[..., :3]
    return make


def _style_image(model: ZooModel, out: Path, quick: bool) -> Path:
    """out/styles/<style>.jpg, painted here when _make_data did not (a style image only one model uses)."""
    assert model.style is not None
    path = out / "styles" / f"{model.style.replace(':', '_')}.jpg"
    if not path.is_file():
        write_image(path, paint_style_image(model.style, size=256 if quick else 512, seed=SEED), quality=90)
    return path


def build_zoo(out: Path, work: Path, quick: bool = False, only: str | None = None,
              sheet: Path | None = None) -> None:
    """Build every zoo model (or the comma-separated `only`) into out/repository, with
    checkpoints, style images, samples, data summary, evaluation and README; the
    datasets and training runs go to `work`. `sheet`: where the contact sheet goes."""
    from artforge.export import export_run
    out, work = Path(out), Path(work)
    wanted = set(only.split(",")) if only else {m.name for m in ZOO}
    unknown = wanted - {m.name for m in ZOO}
    if unknown:
        raise ValueError(f"unknown zoo model(s) {', '.join(sorted(unknown))}; the zoo has "
                         + ", ".join(m.name for m in ZOO))
    data_summary = _make_data(work, out, quick)
    previous = out / "data.json"
    if previous.is_file():  # keep the classifier's data summary when it is not rebuilt this time
        data_summary.setdefault("styles_dataset", json.loads(previous.read_text()).get("styles_dataset"))
    repo = out / "repository"
    evaluation_file = out / "evaluation.json"
    style_file = out / "style_quality.json"
    for model in ZOO:
        if model.name not in wanted:
            continue
        print(f"== {model.name} ({model.kind})", flush=True)
        stylized = None
        if model.kind == "classifier":  # after the stylizers: it learns to recognise them
            stylized, data_summary["styles_dataset"] = _stylized_data(work, repo, quick)
        run = _train(model, work, out, quick, stylized)
        write_bytes_atomic(out / "checkpoints" / f"{model.name}.pt", (Path(run) / "model.pt").read_bytes())
        if not model.exported:
            continue
        path = export_run(run, repo, name=model.name, version=1, overwrite=True)
        print(f"   exported {path}", flush=True)
        if model.kind == "classifier":
            assert stylized is not None
            evaluation = evaluate_classifier(repo, model.name, stylized / "test")
            append_evaluation(repo / model.name / "README.md", evaluation,
                              data_summary["styles_dataset"].get("held_out_photos", []))
            write_json_atomic(evaluation_file, evaluation)
            print(f"   held-out accuracy {evaluation['accuracy']:.1%}", flush=True)
        if model.kind == "dcgan":
            tiles = _tiles_folder(work, out)
            scores = evaluate_generator(repo, model.name, tiles / "test", count=64 if quick else 1000,
                                        train_dir=tiles / "train")
            append_generator_evaluation(repo / model.name / "README.md", scores)
            write_json_atomic(out / f"evaluation_{model.name}.json", scores)
            write_image(out / "generated" / f"{model.name}.png",
                        tile_grid(Repository(repo).generator(model.name).generate(64, seed=SEED), columns=8))
            print(f"   FD {scores['fd']:.1f} to held-out tiles, recall {scores['recall']:.2f}, "
                  f"near-duplicates {scores['duplicates']:.3f}", flush=True)
        if model.kind in ("style", "adapt_style"):
            photos = {n: source_photos()[n] for n in datasets.DEFAULT_HOLDOUT}
            scored = evaluate_stylizer(repo, model.name, _style_image(model, out, quick), photos)
            append_style_evaluation(repo / model.name / "README.md", scored)
            saved = json.loads(style_file.read_text()) if style_file.exists() else {}
            write_json_atomic(style_file, {**saved, model.name: scored})
            print(f"   style metrics {scored['mean']}", flush=True)
    write_json_atomic(out / "data.json", data_summary)
    stylizers = [m.name for m in ZOO if m.kind in ("style", "adapt_style") and (repo / m.name).is_dir()]
    if stylizers and sheet is not None:
        adapted = [m for m in ZOO if m.kind == "adapt_style" and m.name in stylizers]
        contact_sheet(repo, out / "samples", stylizers, sheet,
                      references={f"Gatys ({m.name})": _gatys_reference(m, work, out, quick) for m in adapted})
    final: dict[str, Any] | None = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else None
    quality: dict[str, Any] | None = json.loads(style_file.read_text()) if style_file.exists() else None
    write_index(out, data_summary, final, quality)
    print(f"zoo written to {out}")
