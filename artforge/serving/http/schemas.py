"""The JSON bodies of the HTTP front end, as pydantic models: they document /openapi.json.

Inference bodies are read and written by hand (kserve_routes.py: JSON tensor
data can hold millions of numbers, and the binary extension appends raw bytes
after the JSON), so their models only describe; the small metadata answers
are built through them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

ParameterValue = bool | int | float | str


class ErrorResponse(BaseModel):
    error: str = Field(description="One sentence: what was wrong and what is allowed (the gRPC status message).")


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="BOOL, UINT8, ..., FP32, FP64, BYTES")
    shape: list[int] = Field(description="-1 where the dimension is dynamic")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParameterValue] | None = Field(
        None, description='"binary_data_size": the tensor\'s bytes follow the JSON (binary tensor data extension)')
    data: Any = Field(None, description="Row-major values, flat or nested; absent when binary_data_size is given")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, ParameterValue] | None = Field(
        None, description='"binary_data": true returns this output as binary data; "classification": k returns '
                          "the top k classes as BYTES \"score:index:label\"")


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, ParameterValue] | None = Field(
        None, description='"timeout" (microseconds) bounds the wait; "binary_data_output": true returns every '
                          "output as binary data")
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParameterValue] | None = None
    data: list[Any] | None = Field(None, description="Flat row-major values; absent for binary outputs")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, ParameterValue] | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexRequest(BaseModel):
    repository_name: str = ""
    ready: bool = False


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: str = Field(description="READY, UNAVAILABLE, LOADING, or empty when never loaded")
    reason: str = ""


class RepositoryRequest(BaseModel):
    parameters: dict[str, ParameterValue] | None = Field(
        None, description='load: "config", a JSON model configuration replacing config.pbtxt')


class Label(BaseModel):
    label: str
    score: float
    index: int


class ClassifyResponse(BaseModel):
    model: str
    model_version: str
    labels: list[Label] = Field(description="best first")


class TensorInfo(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelInfo(BaseModel):
    name: str
    kind: str = Field(description="classifier, generator or stylizer; empty when never loaded")
    versions: list[str]
    ready: bool
    reason: str = ""
    backend: str = ""
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    labels: list[str] = []


class ModelListResponse(BaseModel):
    models: list[ModelInfo]
