"""Torch architectures only: no I/O, no training loops."""

from __future__ import annotations

from typing import Any

from torch import nn


def build(kind: str, arch: dict[str, Any]) -> nn.Module:
    """Construct the network a checkpoint's `kind` and `arch` describe."""
    name = arch.get("name")
    kwargs = {k: v for k, v in arch.items() if k != "name"}
    if kind == "classifier" and name == "efficientnet_lite0":
        from artforge.models.efficientnet_lite import EfficientNetLite0
        return EfficientNetLite0(**kwargs)
    if kind == "generator" and name == "dcgan":
        from artforge.models.dcgan import Generator
        return Generator(**kwargs)
    if kind == "stylizer" and name == "transformer_net":
        from artforge.models.style_net import TransformerNet
        return TransformerNet(**kwargs)
    raise ValueError(f"unknown architecture {name!r} for a {kind}")
