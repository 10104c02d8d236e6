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
             settings=preset("classifier", "zoo"),
             quick=dict(size=64, epochs_frozen=1, epochs_unfrozen=1, batch_size=8, unfreeze="1", max_steps=4)),
    ZooModel("abstract_dcgan", "dcgan",
             settings=preset("dcgan", "zoo"),
             quick=dict(ngf=8, ndf=8, epochs=1, batch_size=8, max_steps=3)),
    ZooModel("mosaic", "style", style="mosaic",
             settings=preset("style", "zoo"),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
    ZooModel("swirl", "style", style="swirl",
             settings=preset("style", "zoo"),
             quick=dict(width=0.125, image_size=32, batch_size=2, steps=3, style_size=64)),
)
