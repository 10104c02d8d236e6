"""`artforge zoo build`: make the data, train, export and document every model
of the shipped default zoo, from photos that scikit-image and scikit-learn ship.

Each step is resumable: datasets already made are reused, training runs resume
from their checkpoints, and `--only` rebuilds a subset. torch is imported only
when a model is trained or exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from artforge.files import write_bytes_atomic, write_json_atomic
from artforge.runtime.imageio import write_image
from artforge.training import configs
from artforge.zoo import datasets
from artforge.zoo.catalog import SEED, ZOO, ZooModel
from artforge.zoo.evaluation import append_evaluation, evaluate_classifier
from artforge.zoo.painting import STYLE_IMAGES, paint_style_image
from artforge.zoo.readme import contact_sheet, write_index


def _make_data(work: Path, out: Path, quick: bool) -> dict[str, Any]:
    data = work / "data"
    done = data / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    for name in STYLE_IMAGES:
        image = paint_style_image(name, size=256 if quick else 512, seed=SEED)
        write_image(out / "styles" / f"{name.replace(':', '_')}.jpg", image, quality=90)
    styles = (datasets.render_style_dataset(data / "styles", seed=SEED, crops_per_photo=1, size=96) if quick
              else datasets.render_style_dataset(data / "styles", seed=SEED))
    summary = {
        "styles_dataset": styles,
        "content_images": len(datasets.content_images(data / "content", seed=SEED, count=16 if quick else 400,
                                                      size=64 if quick else 256)),
        "tiles": len(datasets.abstract_tiles(data / "tiles", seed=SEED, count=32 if quick else 4000)),
    }
    datasets.sample_photos(out / "samples")
    write_json_atomic(done, summary)
    return summary


def _train(model: ZooModel, work: Path, out: Path, quick: bool) -> Path:
    settings = {**(model.quick if quick else model.settings), "seed": SEED, "out": str(work / "runs" / model.name)}
    data = work / "data"
    if model.kind == "classifier":
        from artforge.training import classifier
        # Validation (early stopping, best epoch) is split from the training
        # photos; the held-out photos are only used for the final evaluation.
        return classifier.train(configs.ClassifierConfig(data=str(data / "styles" / "train"), **settings))
    if model.kind == "dcgan":
        from artforge.training import dcgan
        return dcgan.train(configs.DCGANConfig(data=str(data / "tiles"), **settings))
    if model.kind == "meta_style":
        from artforge.training import meta_style
        return meta_style.train(configs.MetaStyleConfig(data=str(data / "content"), **settings))
    style_image = _style_image(model, out, quick)
    if model.kind == "adapt_style":
        from artforge.training import adapt_style
        init = work / "runs" / "meta_style"
        if not (init / "model.pt").is_file():
            init = _train(next(m for m in ZOO if m.kind == "meta_style"), work, out, quick)
        return adapt_style.adapt(configs.AdaptStyleConfig(style=str(style_image), init=str(init),
                                                          data=str(data / "content"), **settings))
    from artforge.training import style
    return style.train(configs.StyleConfig(style=str(style_image), data=str(data / "content"), **settings))


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
    repo = out / "repository"
    evaluation_file = out / "evaluation.json"
    for model in ZOO:
        if model.name not in wanted:
            continue
        print(f"== {model.name} ({model.kind})", flush=True)
        run = _train(model, work, out, quick)
        write_bytes_atomic(out / "checkpoints" / f"{model.name}.pt", (Path(run) / "model.pt").read_bytes())
        if not model.exported:
            continue
        path = export_run(run, repo, name=model.name, version=1, overwrite=True)
        print(f"   exported {path}", flush=True)
        if model.kind == "classifier":
            evaluation = evaluate_classifier(repo, model.name, work / "data" / "styles" / "test")
            append_evaluation(repo / model.name / "README.md", evaluation,
                              data_summary["styles_dataset"].get("held_out_photos", []))
            write_json_atomic(evaluation_file, evaluation)
            print(f"   held-out accuracy {evaluation['accuracy']:.1%}", flush=True)
    write_json_atomic(out / "data.json", data_summary)
    stylizers = [m.name for m in ZOO if m.kind in ("style", "adapt_style") and (repo / m.name).is_dir()]
    if stylizers and sheet is not None:
        contact_sheet(repo, out / "samples", stylizers, sheet)
    final: dict[str, Any] | None = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else None
    write_index(out, data_summary, final)
    print(f"zoo written to {out}")
