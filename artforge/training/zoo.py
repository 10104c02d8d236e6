"""`artforge zoo build`: make the data, train, export and document every model
of the shipped default zoo, from photos that scikit-image and scikit-learn ship.

Each step is resumable: datasets already made are reused, training runs resume
from their checkpoints, and `--only` rebuilds a subset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from artforge.training import synthetic
from artforge.training.common import atomic_write_json

SEED = 0


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # training kind: classifier | dcgan | style
    settings: dict[str, Any]
    quick: dict[str, Any]
    style: str | None = None


ZOO = (
    ZooModel("art_style", "classifier",
             settings=dict(size=224, epochs_frozen=4, epochs_unfrozen=3, batch_size=32, unfreeze="3", patience=3),
             quick=dict(size=64, epochs_frozen=1, epochs_unfrozen=1, batch_size=8, unfreeze="1", max_steps=4)),
    ZooModel("abstract_dcgan", "dcgan",
             settings=dict(ngf=32, ndf=32, epochs=32, batch_size=64),
             quick=dict(ngf=8, ndf=8, epochs=1, batch_size=8, max_steps=3)),
    ZooModel("mosaic", "style", style="mosaic",
             settings=dict(width=0.5, image_size=128, style_size=256, batch_size=4, steps=1600),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    ZooModel("swirl", "style", style="swirl",
             settings=dict(width=0.5, image_size=128, style_size=256, batch_size=4, steps=1600),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
)


def _make_data(work: Path, out: Path, quick: bool) -> dict[str, Any]:
    data = work / "data"
    done = data / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    styles_dir = out / "styles"
    styles_dir.mkdir(parents=True, exist_ok=True)
    for name in synthetic.STYLE_IMAGES:
        image = synthetic.paint_style_image(name, size=256 if quick else 512, seed=SEED)
        cv2.imwrite(str(styles_dir / f"{name.replace(':', '_')}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    summary = {
        "styles_dataset": synthetic.render_style_dataset(data / "styles", seed=SEED,
                                                         **({"crops_per_photo": 1, "size": 96} if quick else {})),
        "content_images": len(synthetic.content_images(data / "content", seed=SEED, count=16 if quick else 400,
                                                       size=64 if quick else 256)),
        "tiles": len(synthetic.abstract_tiles(data / "tiles", seed=SEED, count=32 if quick else 4000)),
    }
    synthetic.sample_photos(out / "samples")
    atomic_write_json(summary, done)
    return summary


def _train(model: ZooModel, work: Path, out: Path, quick: bool) -> Path:
    settings = {**(model.quick if quick else model.settings), "seed": SEED, "out": str(work / "runs" / model.name)}
    data = work / "data"
    if model.kind == "classifier":
        from artforge.training.classifier import ClassifierConfig, train
        # Validation (early stopping, best epoch) is split from the training
        # photos; the held-out photos are only used for the final evaluation.
        return train(ClassifierConfig(data=str(data / "styles" / "train"), **settings))
    if model.kind == "dcgan":
        from artforge.training.dcgan import DCGANConfig, train
        return train(DCGANConfig(data=str(data / "tiles"), **settings))
    from artforge.training.style import StyleConfig, train
    return train(StyleConfig(style=str(out / "styles" / f"{model.style}.jpg"), data=str(data / "content"), **settings))


def _evaluate_classifier(repo: Path, name: str, test_dir: Path) -> dict[str, Any]:
    """Accuracy of the exported model (as the runtime runs it) on held-out photos."""
    import numpy as np

    from artforge.runtime import Repository
    from artforge.training.data import image_folder

    model = Repository(repo).load(name)
    samples, classes = image_folder(test_dir)
    index = {label: i for i, label in enumerate(model.metadata.labels)}
    confusion = np.zeros((len(index), len(index)), dtype=int)
    for start in range(0, len(samples), 32):
        chunk = samples[start:start + 32]
        predicted = model.probabilities([str(path) for path, _ in chunk]).argmax(axis=1)
        for (_, truth), guess in zip(chunk, predicted, strict=True):
            confusion[index[classes[truth]], guess] += 1
    per_class = {label: float(confusion[i, i] / max(1, confusion[i].sum())) for label, i in index.items()}
    return {"images": len(samples), "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
            "per_class_accuracy": per_class, "labels": list(model.metadata.labels),
            "confusion_matrix": confusion.tolist()}


def _append_evaluation(card: Path, evaluation: dict[str, Any], held_out: list[str]) -> None:
    lines = ["", "## Evaluation on held-out photos", "",
             f"{evaluation['images']} images rendered from source photos never seen in training "
             f"({', '.join(held_out)}), run through the exported ONNX model by artforge's runtime.", "",
             f"**Top-1 accuracy: {evaluation['accuracy']:.1%}**", "", "| style | accuracy |", "|---|---:|"]
    lines += [f"| {label} | {acc:.1%} |" for label, acc in evaluation["per_class_accuracy"].items()]
    lines += ["", "Confusion matrix (rows: true style, columns: predicted, in label order):", "", "```"]
    lines += [" ".join(f"{n:4d}" for n in row) for row in evaluation["confusion_matrix"]]
    lines += ["```", ""]
    card.write_text(card.read_text().rstrip() + "\n" + "\n".join(lines))


def contact_sheet(repo: Path, samples: Path, stylizers: list[str], target: Path, side: int = 256) -> Path:
    """Inputs (rows) x styles (columns), each cell a centre square of `side` pixels."""
    from artforge.runtime import Repository, read_image, write_image
    from artforge.runtime.grid import tile_grid

    def square(image):
        h, w = image.shape[:2]
        s = min(h, w)
        crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)

    models = [Repository(repo).load(name) for name in stylizers]
    cells = []
    for path in sorted(samples.glob("*.jpg")):
        photo = square(read_image(path)[..., :3])
        cells += [photo] + [model.stylize(photo) for model in models]
    write_image(target, tile_grid(cells, columns=len(models) + 1))
    return target


def _write_index(out: Path, data_summary: dict[str, Any], evaluation: dict[str, Any] | None) -> None:
    repo = out / "repository"
    rows = []
    for model in ZOO:
        folder = repo / model.name
        files = list(folder.glob("*/model.onnx"))
        if not files:
            continue
        size = sum(f.stat().st_size for f in files) / 1e6
        what = {"classifier": "art-style classifier (EfficientNet-Lite0, fine-tuned)",
                "dcgan": "DCGAN generator of abstract 64x64 tiles",
                "style": f"style network, style image `styles/{model.style}.jpg`"}[model.kind]
        rows.append(f"| [{model.name}](repository/{model.name}/README.md) | {what} | {size:.1f} MB |")
    styles = data_summary.get("styles_dataset", {})
    text = [
        "# The shipped default zoo", "",
        "Every model here was trained by this project from data it made itself from the photos that",
        "scikit-image and scikit-learn ship; nothing was downloaded. Rebuild it all with",
        "`artforge zoo build` (from the project root; about an hour on 2 CPU cores).", "",
        "| model | what | size |", "|---|---|---:|", *rows, "",
        "- `repository/`: Triton-layout model repository (`<name>/config.pbtxt`, `<name>/1/model.onnx`, "
        "model cards).",
        "- `checkpoints/`: the PyTorch weights each ONNX file was exported from (for benchmarks and fine-tuning).",
        "- `styles/`: the procedurally painted style images.",
        "- `samples/`: photos for the demo.", "",
        "## Data", "",
        f"- Art-style dataset: styles {', '.join(styles.get('styles', []))}; training photos "
        f"{', '.join(styles.get('train_photos', []))}; held-out photos {', '.join(styles.get('held_out_photos', []))}.",
        f"- Style-network content images: {data_summary.get('content_images')} crops of the source photos.",
        f"- DCGAN tiles: {data_summary.get('tiles')} 64x64 crops of the painted style images.", "",
    ]
    if evaluation:
        text += [f"Art-style classifier top-1 accuracy on held-out photos: **{evaluation['accuracy']:.1%}** "
                 f"({evaluation['images']} images).", ""]
    text += ["![contact sheet](../docs/contact_sheet.png)", ""]
    (out / "README.md").write_text("\n".join(text))


def build_zoo(out: Path, work: Path, quick: bool = False, only: str | None = None,
              sheet: Path | None = None) -> None:
    import shutil

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
        path = export_run(run, repo, name=model.name, version=1, overwrite=True)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(run) / "model.pt", out / "checkpoints" / f"{model.name}.pt")
        print(f"   exported {path}", flush=True)
        if model.kind == "classifier":
            evaluation = _evaluate_classifier(repo, model.name, work / "data" / "styles" / "test")
            _append_evaluation(repo / model.name / "README.md", evaluation,
                               data_summary["styles_dataset"].get("held_out_photos", []))
            atomic_write_json(evaluation, evaluation_file)
            print(f"   held-out accuracy {evaluation['accuracy']:.1%}", flush=True)
    atomic_write_json(data_summary, out / "data.json")
    stylizers = [m.name for m in ZOO if m.kind == "style" and (repo / m.name).is_dir()]
    if stylizers and sheet is not None:
        contact_sheet(repo, out / "samples", stylizers, sheet)
    evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else None
    _write_index(out, data_summary, evaluation)
    print(f"zoo written to {out}")
