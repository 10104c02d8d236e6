"""torch -> ONNX export, verification and the Triton-style model repository writer.

This package imports torch; runtime/ and serving/ must never import it.
"""

from artforge.export.onnx_export import (
    DEFAULT_OPSET,
    LoadedRun,
    add_arguments,
    export_onnx,
    export_run,
    load_run,
    publish,
    run_from_args,
    set_metadata,
)
from artforge.export.repository import next_version, triton_config, validate_name, write_model
from artforge.export.verify import ParityReport, check_graph, compare, verify_model
from artforge.export.wrappers import ClassifierWrapper, GeneratorWrapper, StylizerWrapper, wrap

__all__ = [
    "DEFAULT_OPSET", "ClassifierWrapper", "GeneratorWrapper", "LoadedRun", "ParityReport", "StylizerWrapper",
    "add_arguments", "check_graph", "compare", "export_onnx", "export_run", "load_run", "next_version", "publish",
    "run_from_args", "set_metadata", "triton_config", "validate_name", "verify_model", "wrap", "write_model",
]
