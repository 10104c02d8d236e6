"""The models of the shipped zoo and the training settings each is built with.

The settings are the `zoo` presets of artforge/training/presets.py, one home
for those numbers: `artforge train KIND --preset zoo` trains as the zoo does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artforge.training.presets import settings as preset

#: every dataset and training run of the zoo is made from this seed
SEED = 0

#: the DCGAN's tiles (zoo/datasets.art_tiles): training count, held-out count, sources
TILE_SETTINGS: dict[str, dict[str, Any]] = {
    "full": dict(count=4000, test_count=1000, paintings_per_style=12, photo_crops=2),
    "quick": dict(count=32, test_count=16, paintings_per_style=1, photo_crops=1),
}

#: the DCGAN training practice of the zoo preset, kept in the quick build too (it tests the options' code)
DCGAN_PRACTICE: dict[str, Any] = {key: value for key, value in preset("dcgan", "zoo").items()
                                  if key in ("loss", "spectral_norm", "lr", "lr_d", "ema", "augment")}


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # training kind: classifier | dcgan | style | meta_style (not exported) | adapt_style
    settings: dict[str, Any]
    #: toy settings for `artforge zoo build --quick` (tests the build, not the model)
    quick: dict[str, Any]
    #: the style image (a painting.paint_style_image name; its file is styles/<name with : as _>.jpg)
    style: str | None = None

    @property
    def exported(self) -> bool:
        """Whether the model goes to the repository (a meta-learned initialisation is only a checkpoint)."""
        return self.kind != "meta_style"


ZOO = (
    ZooModel("mosaic", "style", style="mosaic",
             settings=preset("style", "zoo"),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    # The Gram loss alone never paints swirl's yellow suns (a tenth of its style image); the sliced term asks
    # for them (docs/style_quality.md, measured at the zoo's length against the Gram loss at weight 1).
    ZooModel("swirl", "style", style="swirl",
             settings={**preset("style", "zoo"), "style_match": "gram+sliced", "style_weight": 0.5},
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    # The meta-learned initialisation `artforge adapt-style` starts from (checkpoints/meta_style.pt; not a
    # stylizer, so not in the repository): MetaStyleConfig's defaults, procedural styles only.
    ZooModel("meta_style", "meta_style", settings=dict(),
             quick=dict(width=0.125, image_size=32, style_size=32, batch_size=2, steps=2, procedural_styles=3,
                        inner_steps=1, adapt_steps=2)),
    # Adapted from meta_style by `adapt-style` with its default steps; pointillism is the art-style family
    # meta-training holds out, so this style image was never seen in meta-training.
    ZooModel("pointillism", "adapt_style", style="pointillism:chelsea", settings=dict(), quick=dict(steps=2)),
    # After the style networks: its tiles include photos they stylize. The training practice
    # (hinge loss, spectral norm, two time scales, EMA, DiffAugment) is measured in docs/dcgan.md.
    ZooModel("abstract_dcgan", "dcgan",
             settings={**preset("dcgan", "zoo"), "eval_every": 8, "eval_samples": 256},
             quick=dict(ngf=8, ndf=8, epochs=1, batch_size=8, max_steps=3, **DCGAN_PRACTICE,
                        eval_every=1, eval_samples=16)),
    # Last: it learns to recognise the stylizers above, from their own outputs.
    ZooModel("art_style", "classifier",
             settings=preset("classifier", "zoo"),
             quick=dict(size=64, epochs_frozen=1, epochs_unfrozen=1, batch_size=8, unfreeze="1", max_steps=4)),
)
