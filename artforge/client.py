"""The artforge client SDK: `from artforge.client import ImageClient, AsyncImageClient`.

A short import path for apps; the code lives in artforge/serving/client.py
(see there for options, errors and retries). Imports neither torch nor the runtime.
"""

from artforge.serving.client import (
    AsyncImageClient,
    AuthenticationError,
    DeadlineExceededError,
    ImageClient,
    ImageInput,
    ModelInfo,
    RemoteError,
    ServerUnavailableError,
    StylizeResult,
    TensorInfo,
)

__all__ = [
    "AsyncImageClient", "ImageClient", "ImageInput", "ModelInfo", "StylizeResult", "TensorInfo",
    "RemoteError", "ServerUnavailableError", "DeadlineExceededError", "AuthenticationError",
]
