"""KServe v2 / Open Inference Protocol over HTTP/REST, with Triton's binary tensor data extension.

`tritonclient.http` works unchanged. Routes follow Triton's HTTP API: health,
server and model metadata, model ready, infer, and Triton's model config,
statistics and repository endpoints. Everything below the wire format is
kserve_requests.KServeRequests, which the gRPC servicer calls too.

Binary tensor data: an input whose parameters carry `binary_data_size` has
that many bytes after the JSON object (in input order), whose length the
`Inference-Header-Content-Length` header gives; outputs come back binary
when the request asks (`binary_data` per output, `binary_data_output` for
all), and then the response carries the same header. JSON outputs are flat
row-major lists.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.message import Message

from artforge.errors import InvalidInputError, ResourceExhaustedError, quoted
from artforge.serving.http import schemas
from artforge.serving.http.app import Services, peer_of
from artforge.serving.kserve_requests import InputTensor, Param, RequestedOutput, TensorRequest, TensorResult
from artforge.serving.tensors import datatype_of, parse_json, parse_raw, raw_bytes

HEADER_LENGTH = "Inference-Header-Content-Length"
#: JSON headers above this size are parsed in a worker thread, not on the event loop
_PARSE_INLINE_BYTES = 64 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse, "description": text}
    for status, text in ((400, "Bad request"), (401, "Missing or wrong token"), (404, "Unknown model or version"),
                         (413, "Too large"), (429, "Busy: retry after Retry-After seconds"),
                         (503, "Model not ready, or the server is shutting down"),
                         (504, "The deadline passed"))}


def _json(message: Message) -> dict[str, Any]:
    """A protobuf message as Triton's REST JSON: proto field names, 64-bit integers as numbers."""
    return _numbers(json_format.MessageToDict(message, preserving_proto_field_name=True), message)


def _numbers(value: Any, message: Message) -> Any:
    """MessageToDict writes 64-bit integers as strings (proto3's JSON mapping); Triton writes numbers."""
    descriptor = message.DESCRIPTOR
    out = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            out[key] = item
            continue
        sub = getattr(message, key)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {k: _numbers(v, sub[k]) if value_field.message_type is not None else v
                        for k, v in item.items()}
        elif field.message_type is not None:
            out[key] = ([_numbers(v, m) for v, m in zip(item, sub, strict=True)]
                        if isinstance(item, list) else _numbers(item, sub))
        elif field.cpp_type in (field.CPPTYPE_INT64, field.CPPTYPE_UINT64):
            out[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
        else:
            out[key] = item
    return out


# ------------------------------------------------------------------ reading an infer request

def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    return value


def _parameters(value: object, what: str) -> dict[str, Param]:
    params = _object({} if value is None else value, f"{what} 'parameters'")
    for key, item in params.items():
        if not isinstance(item, (bool, int, float, str)):
            raise InvalidInputError(f"{what} parameter {quoted(key)} must be a string, number or boolean")
    return params


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of an infer request body."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise InvalidInputError(f"header {HEADER_LENGTH} is {header_length!r}; it must be the length of the JSON "
                                f"object at the start of the body (at most {len(body)} bytes)")
    length = int(header_length)
    return body[:length], body[length:]


def _load_json(text: bytes) -> dict[str, Any]:
    try:
        return _object(json.loads(text), "the inference request")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidInputError(f"the inference request is not valid JSON ({error})") from None


def tensor_request(model: str, version: str, header: dict[str, Any], binary: bytes, size: int) -> TensorRequest:
    """The protocol-neutral form of a REST inference request (tensor values are read later, in a worker)."""
    inputs_json = header.get("inputs")
    if not isinstance(inputs_json, list):
        raise InvalidInputError("the inference request needs 'inputs', a list of tensors")
    inputs, offset = [], 0
    for i, item in enumerate(inputs_json):
        tensor = _object(item, f"inputs[{i}]")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidInputError(f"inputs[{i}] needs a 'name' string")
        what = f"input {quoted(name)}"
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if not isinstance(datatype, str):
            raise InvalidInputError(f"{what} needs a 'datatype' string (UINT8, FP32, ...)")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidInputError(f"{what} needs a 'shape', a list of integers")
        params = _parameters(tensor.get("parameters"), what)
        size_param = params.get("binary_data_size")
        if size_param is not None:
            if isinstance(size_param, bool) or not isinstance(size_param, int) or size_param < 0:
                raise InvalidInputError(f"{what}: binary_data_size must be a non-negative integer")
            if "data" in tensor:
                raise InvalidInputError(f"{what} has both 'data' and binary_data_size; send one")
            if offset + size_param > len(binary):
                raise InvalidInputError(f"{what}: binary_data_size {size_param} runs past the binary data after "
                                        f"the JSON ({len(binary)} bytes; is {HEADER_LENGTH} right?)")
            chunk = binary[offset:offset + size_param]
            offset += size_param
            inputs.append(InputTensor(name, datatype, tuple(shape), partial(parse_raw, datatype, tuple(shape), chunk,
                                                                            what)))
        else:
            if "data" not in tensor:
                raise InvalidInputError(f"{what} needs 'data' (or binary_data_size and the bytes after the JSON)")
            data = tensor["data"]
            inputs.append(InputTensor(name, datatype, tuple(shape), partial(parse_json, datatype, tuple(shape), data,
                                                                            what)))
    if offset != len(binary):
        raise InvalidInputError(f"the body has {len(binary) - offset} bytes after the JSON and the inputs' "
                                "binary_data_size parameters that no input claims")
    outputs = []
    outputs_json = header.get("outputs", [])
    if not isinstance(outputs_json, list):
        raise InvalidInputError("'outputs' must be a list of {\"name\": ...} objects")
    for i, item in enumerate(outputs_json):
        output = _object(item, f"outputs[{i}]")
        if not isinstance(output.get("name"), str):
            raise InvalidInputError(f"outputs[{i}] needs a 'name' string")
        outputs.append(RequestedOutput(output["name"], _parameters(output.get("parameters"),
                                                                     f"output {quoted(output['name'])}")))
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInputError("'id' must be a string")
    return TensorRequest(model=model, version=version, inputs=inputs, outputs=outputs, id=request_id,
                         parameters=_parameters(header.get("parameters"), "the request"), size=size)


# ------------------------------------------------------------------ writing the response

def _json_data(array: np.ndarray) -> list | None:
    """Flat JSON values of an output, or None when it has no JSON form (BYTES that are not UTF-8)."""
    flat = array.reshape(-1)
    if array.dtype == object:
        try:
            return [e.decode() if isinstance(e, bytes) else str(e) for e in flat]
        except UnicodeDecodeError:
            return None
    return flat.tolist()


def encode_result(result: TensorResult, binary_default: bool) -> Response:
    """The REST response: JSON, plus binary tensor data after it for the outputs that asked for it."""
    outputs, blobs = [], []
    for output in result.outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": datatype_of(output.array.dtype),
                                 "shape": list(output.array.shape)}
        data = None if (binary_default if output.binary is None else output.binary) else _json_data(output.array)
        if data is None:
            raw = raw_bytes(output.array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = data
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": result.model, "model_version": result.version, "outputs": outputs}
    if result.id:
        document["id"] = result.id
    text = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(b"".join([text, *blobs]), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResourceExhaustedError(f"the request body is {int(declared)} bytes, over this server's limit of "
                                     f"{limit} (--max-message-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ResourceExhaustedError(f"the request body is over this server's limit of {limit} bytes "
                                         "(--max-message-mb)")
        chunks.append(chunk)
    return _decompressed(b"".join(chunks), request.headers.get("content-encoding", ""), limit)


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body (tritonclient's request compression) inflated, at most `limit` bytes of it."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(f"Content-Encoding {encoding[:32]!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidInputError(f"the {encoding} request body cannot be inflated ({error})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ResourceExhaustedError(f"the request body inflates to over this server's limit of {limit} bytes "
                                     "(--max-message-mb)")
    return out


# ------------------------------------------------------------------ routes

def health_router(services: Services) -> APIRouter:
    """Liveness and readiness: open to probes (no token), like gRPC health."""
    health = APIRouter(tags=["health"])

    @health.get("/v2/health/live", response_model=schemas.LiveResponse, summary="Server live")
    async def live() -> schemas.LiveResponse:
        return schemas.LiveResponse(live=True)

    @health.get("/v2/health/ready", response_model=schemas.ReadyResponse, summary="Server ready",
                responses={503: {"model": schemas.ReadyResponse, "description": "Not ready"}})
    async def ready() -> Response:
        ok = services.kserve.server_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    return health


def router(services: Services) -> APIRouter:
    kserve = services.kserve
    api = APIRouter(tags=["KServe v2"], responses=_ERRORS)

    async def server_metadata() -> schemas.ServerMetadataResponse:
        return schemas.ServerMetadataResponse(**_json(kserve.server_metadata()))

    async def model_ready(request: Request, name: str, version: str) -> Response:
        # Not ready is 400, as Triton answers (tritonclient reads any non-200 as false); a name the
        # repository does not have is 404.
        ok = kserve.model_ready(name, version)
        status = 200 if ok else 400 if services.manager.label(name) else 404
        return JSONResponse({"name": name, "ready": ok}, status_code=status)

    async def model_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
        return await services.answer("ModelMetadata", name, lambda: _async(_json(kserve.model_metadata(name, version))),
                                     per_model=False)

    async def model_config(request: Request, name: str, version: str) -> dict[str, Any]:
        return await services.answer("ModelConfig", name, lambda: _async(_json(kserve.model_config(name, version))),
                                     per_model=False)

    async def statistics(request: Request, name: str, version: str) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            return {"model_stats": [_json(s) for s in kserve.statistics(name, version)]}
        return await services.answer("ModelStatistics", name, work, per_model=False)

    async def infer(request: Request, name: str, version: str) -> Response:
        async def work() -> Response:
            services.manager.resolve(name, version)  # an unknown model is refused before its body is read
            body = await read_body(request, services.options.max_message_bytes)
            text, binary = _split_body(body, request.headers.get(HEADER_LENGTH))
            if len(text) > _PARSE_INLINE_BYTES:
                header = await _in_worker(services, _load_json, text)
            else:
                header = _load_json(text)
            tensors = tensor_request(name, version, header, binary, len(body))
            binary_default = tensors.parameters.get("binary_data_output") is True
            return await kserve.infer(tensors, lambda result: encode_result(result, binary_default), call="infer")
        return await services.answer("ModelInfer", name, work)

    infer_doc: dict[str, Any] = {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": (
                "The JSON inference request followed by binary tensor data; the header "
                f"{HEADER_LENGTH} gives the JSON's length")}}}}
    infer_responses: dict[int | str, dict[str, Any]] = {200: {"model": schemas.InferenceResponse, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    ready_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": schemas.ModelReadyResponse, "description": "Not ready"},
        404: {"model": schemas.ModelReadyResponse, "description": "No such model"}}

    async def every_statistics() -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            return {"model_stats": [_json(s) for s in kserve.statistics()]}
        return await services.answer("ModelStatistics", "", work, per_model=False)

    # Before /v2/models/{name}, which would take "stats" for a model name.
    api.add_api_route("/v2/models/stats", every_statistics, methods=["GET"], summary="Every model's statistics",
                      response_model=dict[str, Any])
    for handler, suffix, method, options in (
            (model_ready, "/ready", "GET", {"summary": "Model ready", "response_model": schemas.ModelReadyResponse,
                                             "responses": ready_responses}),
            (model_metadata, "", "GET", {"summary": "Model metadata",
                                         "response_model": schemas.ModelMetadataResponse}),
            (model_config, "/config", "GET", {"summary": "Model configuration (Triton's model configuration "
                                              "extension)", "response_model": dict[str, Any]}),
            (statistics, "/stats", "GET", {"summary": "Model statistics (Triton's statistics extension)",
                                           "response_model": dict[str, Any]}),
            (infer, "/infer", "POST", {"summary": "Inference", "openapi_extra": infer_doc,
                                       "responses": infer_responses, "response_model": None})):
        api.add_api_route("/v2/models/{name}" + suffix, _latest(handler), methods=[method], **options)
        api.add_api_route("/v2/models/{name}/versions/{version}" + suffix, _versioned(handler), methods=[method],
                          **options)
    api.add_api_route("/v2", server_metadata, methods=["GET"], summary="Server metadata",
                      response_model=schemas.ServerMetadataResponse)
    api.add_api_route("/v2/", server_metadata, methods=["GET"], include_in_schema=False)

    @api.post("/v2/repository/index", response_model=list[schemas.RepositoryModel],
              summary="Repository index (Triton's model repository extension)")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        async def work() -> list[dict[str, Any]]:
            body = await _optional_json(request, services)
            query = schemas.RepositoryIndexRequest(**_fields(body, ("repository_name", "ready"), "the index request"))
            rows = await kserve.repository_index(query.repository_name, query.ready)
            return [_json(row) for row in rows]
        return await services.answer("RepositoryIndex", "", work, per_model=False)

    @api.post("/v2/repository/models/{name}/load", summary="Load or reload a model",
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/RepositoryRequest"}}}}})
    async def load(name: str, request: Request) -> Response:
        async def work() -> Response:
            body = await _optional_json(request, services)
            await kserve.load(name, _parameters(body.get("parameters"), "the load request"), peer_of(request))
            return JSONResponse({})
        return await services.answer("RepositoryModelLoad", name, work, per_model=False)

    @api.post("/v2/repository/models/{name}/unload", summary="Unload a model",
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/RepositoryRequest"}}}}})
    async def unload(name: str, request: Request) -> Response:
        async def work() -> Response:
            body = await _optional_json(request, services)
            # Triton's `unload_dependents` has nothing to act on: artforge models have no dependents.
            _parameters(body.get("parameters"), "the unload request")
            await kserve.unload(name, peer_of(request))
            return JSONResponse({})
        return await services.answer("RepositoryModelUnload", name, work, per_model=False)

    return api


def _latest(handler: Callable[[Request, str, str], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The route without a version in its path: the server's version (the latest loaded)."""
    async def route(request: Request, name: str) -> Any:
        return await handler(request, name, "")
    return route


def _versioned(handler: Callable[[Request, str, str], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def route(request: Request, name: str, version: str) -> Any:
        return await handler(request, name, version)
    return route


async def _async(value: Any) -> Any:
    return value


async def _in_worker(services: Services, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(services.executor, fn, *args)


async def _optional_json(request: Request, services: Services) -> dict[str, Any]:
    """A small JSON object body, or {} when the body is empty."""
    body = await read_body(request, services.options.max_message_bytes)
    if not body.strip():
        return {}
    try:
        return _object(json.loads(body), "the request body")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidInputError(f"the request body is not valid JSON ({error})") from None


def _fields(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    for key in body:
        if key not in allowed:
            raise InvalidInputError(f"{what} has no field {quoted(key)}; fields: {', '.join(allowed)}")
    if "ready" in body and not isinstance(body["ready"], bool):
        raise InvalidInputError(f"{what}: 'ready' must be true or false")
    if "repository_name" in body and not isinstance(body["repository_name"], str):
        raise InvalidInputError(f"{what}: 'repository_name' must be a string")
    return dict(body)

