"""The models of the shipped zoo and the training settings each is built with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: every dataset and training run of the zoo is made from this seed
SEED = 0


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
    # The meta-learned initialisation `artforge adapt-style` starts from (checkpoints/meta_style.pt; not a
    # stylizer, so not in the repository): MetaStyleConfig's defaults, procedural styles only.
    ZooModel("meta_style", "meta_style", settings=dict(),
             quick=dict(width=0.125, image_size=32, style_size=32, batch_size=2, steps=2, procedural_styles=3,
                        inner_steps=1, adapt_steps=2)),
    # Adapted from meta_style by `adapt-style` with its default steps; pointillism is the art-style family
    # meta-training holds out, so this style image was never seen in meta-training.
    ZooModel("pointillism", "adapt_style", style="pointillism:chelsea", settings=dict(), quick=dict(steps=2)),
)
