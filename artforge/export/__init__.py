"""torch -> ONNX export, verification, precision variants, TensorRT engines and the
Triton-style model repository writer.

The names below load on first use (PEP 562), so that torch-free submodules
(tensorrt, precision) can be imported without torch. runtime/ and serving/
must never import this package.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "artforge.export.onnx_export": ("LoadedRun", "export_onnx", "export_run", "load_run", "publish", "set_metadata"),
    "artforge.export.repository": ("next_version", "triton_config", "validate_name", "write_model"),
    "artforge.export.verify": ("ParityReport", "check_graph", "compare", "verify_model"),
    "artforge.export.wrappers": ("ClassifierWrapper", "GeneratorWrapper", "StylizerWrapper", "wrap"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
