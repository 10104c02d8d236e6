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
             settings=dict(ngf=32, ndf=32, epochs=12, batch_size=64),
             quick=dict(ngf=8, ndf=8, epochs=1, batch_size=8, max_steps=3)),
    ZooModel("mosaic", "style", style="mosaic",
             settings=dict(width=0.5, image_size=160, batch_size=4, steps=2000),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    ZooModel("swirl", "style", style="swirl",
             settings=dict(width=0.5, image_size=160, batch_size=4, steps=2000),
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
                                                         **({"crops_per_photo": 2} if quick else {})),
        "content_images": len(synthetic.content_images(data / "content", seed=SEED, count=16 if quick else 400,
                                                       size=64 if quick else 256)),
        "tiles": len(synthetic.abstract_tiles(data / "tiles", seed=SEED, count=32 if quick else 4000)),
    }
    synthetic.sample_photos(out / "samples")
    atomic_write_json(summary, done)
    return summary


def _train(model: ZooModel, work: Path, out: Path, quick: bool) -> Path:
    settings = {**(model.quick if quick else model.settings), "seed": SEED, "out": work / "runs" / model.name}
    data = work / "data"
    if model.kind == "classifier":
        from artforge.training.classifier import ClassifierConfig, train
        return train(ClassifierConfig(data=data / "styles" / "train", val=data / "styles" / "test", **settings))
    if model.kind == "dcgan":
        from artforge.training.dcgan import DCGANConfig, train
        return train(DCGANConfig(data=data / "tiles", **settings))
    from artforge.training.style import StyleConfig, train
    return train(StyleConfig(style=out / "styles" / f"{model.style}.jpg", data=data / "content", **settings))


def build_zoo(out: Path, work: Path, quick: bool = False, only: str | None = None) -> None:
    from artforge.export import export_run
    out, work = Path(out), Path(work)
    wanted = set(only.split(",")) if only else {m.name for m in ZOO}
    unknown = wanted - {m.name for m in ZOO}
    if unknown:
        raise ValueError(f"unknown zoo model(s) {', '.join(sorted(unknown))}; the zoo has "
                         + ", ".join(m.name for m in ZOO))
    data_summary = _make_data(work, out, quick)
    for model in ZOO:
        if model.name not in wanted:
            continue
        print(f"== {model.name} ({model.kind})")
        run = _train(model, work, out, quick)
        path = export_run(run, out / "repository", name=model.name, version=1, overwrite=True)
        print(f"   exported {path}")
    atomic_write_json(data_summary, out / "data.json")
    print(f"zoo written to {out}")
