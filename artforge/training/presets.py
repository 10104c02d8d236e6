"""Named training presets: `artforge train KIND --preset fast|zoo|quality`.

A preset names a whole recipe: every option it lists is set by it, and an
option given explicitly (on the command line, or as a keyword in Python)
wins over the preset. Options a preset does not list keep their defaults.

- fast: a first look in minutes on a CPU (a narrow network, small crops,
  few steps): to check data and settings before a long run.
- zoo: the settings the shipped zoo's models are trained with; the zoo's
  recipe (artforge/zoo/catalog.py) reads them from here.
- quality: the slowest recipe this project knows. For the style network and
  the DCGAN it is the defaults (Johnson et al.'s full-width network on
  256 px crops; Radford et al.'s paper settings); for the classifier it
  fine-tunes the whole backbone for longer (early stopping still ends a
  phase when validation stops improving).

Plain Python: the command line builds its --help from these without torch.
docs/training.md has the measured time of each preset on the 2-core CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

PRESET_NAMES = ("fast", "zoo", "quality")

# Radford et al.'s DCGAN practice, the trainer's defaults: BCE loss, batch norm in D, one learning rate.
_PAPER_PRACTICE: dict[str, Any] = dict(loss="bce", spectral_norm=False, lr=2e-4, lr_d=None, ema=0.0, augment="")

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "style": {
        "fast": dict(width=0.25, image_size=128, style_size=256, batch_size=4, steps=400, style_weight=None),
        # style_weight None is the loss network's default (DEFAULT_WEIGHTS: 0.5). The zoo's 1 brought both zoo
        # styles closer to their style images in colour and texture at its length, at some cost in edges kept
        # (docs/style_quality.md).
        "zoo": dict(width=0.5, image_size=128, style_size=256, batch_size=4, steps=1600, style_weight=1.0),
        "quality": dict(width=1.0, image_size=256, style_size=256, batch_size=4, steps=2000, style_weight=None),
    },
    "dcgan": {
        # fast and quality keep Radford et al.'s practice (the defaults); the zoo's is not yet shown to be better.
        "fast": dict(ngf=32, ndf=32, epochs=5, batch_size=64, **_PAPER_PRACTICE),
        # The zoo's training practice (docs/dcgan.md): hinge loss, spectral norm, two time scales, EMA, DiffAugment.
        "zoo": dict(ngf=32, ndf=32, epochs=640, batch_size=64, loss="hinge", spectral_norm=True, lr=1e-4, lr_d=4e-4,
                    ema=0.999, augment="color,translation,cutout"),
        "quality": dict(ngf=64, ndf=64, epochs=25, batch_size=128, **_PAPER_PRACTICE),
    },
    "classifier": {
        # Head only: a frozen-backbone step is a forward pass plus a tiny backward one.
        "fast": dict(size=224, epochs_frozen=3, epochs_unfrozen=0, batch_size=32, unfreeze="3", patience=3),
        "zoo": dict(size=224, epochs_frozen=4, epochs_unfrozen=3, batch_size=32, unfreeze="3", patience=3),
        "quality": dict(size=224, epochs_frozen=4, epochs_unfrozen=6, batch_size=32, unfreeze="all", patience=3),
    },
}

Config = TypeVar("Config")


def kinds() -> tuple[str, ...]:
    return tuple(PRESETS)


def check(kind: str, name: str | None) -> None:
    if kind not in PRESETS:
        raise ValueError(f"no presets for {kind!r}; presets exist for {', '.join(PRESETS)}")
    if name is not None and name not in PRESETS[kind]:
        raise ValueError(f"unknown preset {name!r} for {kind}; choose one of {', '.join(PRESETS[kind])}")


def preset_fields(kind: str) -> tuple[str, ...]:
    """The options any preset of `kind` sets."""
    check(kind, None)
    return tuple(dict.fromkeys(key for values in PRESETS[kind].values() for key in values))


def settings(kind: str, name: str) -> dict[str, Any]:
    """The preset's option values, with its name (a config's `preset` field)."""
    check(kind, name)
    return {"preset": name, **PRESETS[kind][name]}


def configure(kind: str, config: type[Config], preset: str | None = None, **given: Any) -> Config:
    """config(...) with the preset's values, then the `given` ones on top (explicit beats preset)."""
    check(kind, preset)
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]  # a dataclass type
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"{config.__name__} has no option(s) {', '.join(unknown)}")
    values = settings(kind, preset) if preset else {}
    return config(**{**values, **given})


def describe(kind: str, name: str) -> str:
    """'width 0.25, image-size 128, ...' as options read on the command line."""
    return ", ".join(f"{key.replace('_', '-')} {value}" for key, value in PRESETS[kind][name].items())
