"""The models of the shipped zoo and the training settings each is built with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: every dataset and training run of the zoo is made from this seed
SEED = 0


#: the style networks' loss options (training/configs.py StyleConfig), named so that a rebuild's
#: provenance and this recipe say the same; measured in docs/style_quality.md
STYLE_LOSS: dict[str, Any] = dict(smoothing="none", style_scales=(1.0,))


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # training kind: classifier | dcgan | style
    settings: dict[str, Any]
    #: toy settings for `artforge zoo build --quick` (tests the build, not the model)
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
             settings=dict(width=0.5, image_size=128, style_size=256, batch_size=4, steps=1600, **STYLE_LOSS),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    ZooModel("swirl", "style", style="swirl",
             settings=dict(width=0.5, image_size=128, style_size=256, batch_size=4, steps=1600, **STYLE_LOSS),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
)
