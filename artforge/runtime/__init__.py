"""artforge.runtime: load exported models and run them, without torch.

    from artforge.runtime import Repository
    repo = Repository("zoo")
    model = repo.load("styles")          # a Classifier, Generator or Stylizer, by metadata
    model.classify("painting.jpg", top_k=3)  # [(label, probability), ...]

Layers, bottom up: backends (run tensors), imageio (decode/encode), pipeline
(resize, crop, pad), models (the artifact contract per kind), repository
(Triton-style folders).
"""

from artforge.runtime.backends import Backend, TensorSpec, available_backends, create_backend
from artforge.runtime.imageio import (
    ACCEPTED_FORMATS,
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    decode_cost_bytes,
    decode_image,
    encode_image,
    load_image,
    probe_image,
    read_image,
    write_image,
)
from artforge.runtime.models import Classifier, Generator, Model, Stylizer, load_model
from artforge.runtime.repository import Repository

__all__ = [
    "Backend", "TensorSpec", "available_backends", "create_backend",
    "ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "ImageInfo", "decode_cost_bytes", "decode_image", "encode_image",
    "load_image", "probe_image", "read_image", "write_image",
    "Classifier", "Generator", "Model", "Stylizer", "load_model",
    "Repository",
]
