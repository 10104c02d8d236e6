"""Malformed requests for both gRPC services, from a seeded generator.

tests/test_serving_fuzz.py sends a few hundred of them to a test server;
benchmarks/soak_serving.py mixes them into a long run against the zoo.
Every request is sent as raw bytes through a generic channel (identity
serializers), so a case can be anything from a valid message with one bad
field to bytes that are no protobuf at all.

What a server must do with each: answer a status that is not UNKNOWN or
INTERNAL (per stream item too), in a bounded message that does not name
the repository's path, and keep serving (`good_cases` after each batch).
"""

from __future__ import annotations

import json
import math
import random
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.runtime.imageio import encode_image
from artforge.serving.status import MAX_MESSAGE_CHARS

KSERVE = "/inference.GRPCInferenceService/"
IMAGES = "/artforge.v1.ImageService/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
#: every method with a request message; request-streaming ones take several. Health's Watch never ends, so it
#: is not here.
METHODS: dict[str, bool] = {
    **{KSERVE + name: False for name in (
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelConfig",
        "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")},
    KSERVE + "ModelStreamInfer": True,
    **{IMAGES + name: False for name in ("Classify", "Generate", "Stylize", "ListModels")},
    IMAGES + "StylizeStream": True,
    HEALTH_CHECK: False,
    REFLECTION: True,
}
BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
INT32_MAX, INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1


@dataclass(frozen=True)
class Targets:
    """The models a run aims at, found with ListModels (`discover`)."""

    classifier: str
    classifier_input: str
    classifier_size: int
    generator: str
    latent_size: int
    stylizer: str
    #: a small valid PNG
    image: bytes

    @property
    def sacrificial(self) -> str:
        """The model load / unload cases aim at; good_cases never use it."""
        return self.generator


@dataclass(frozen=True)
class Case:
    method: str
    messages: tuple[bytes, ...]
    #: the strategy that made it, for reports
    what: str

    @property
    def streaming(self) -> bool:
        return METHODS[self.method]


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    #: status names of per-item errors in a stream's responses
    in_band: list[str] = field(default_factory=list)
    #: the client's deadline passed: the server did not answer in time (not its own DEADLINE_EXCEEDED)
    timed_out: bool = False


def discover(channel: grpc.Channel, timeout: float = 30) -> Targets:
    """Targets from the server's ListModels: the first ready model of each kind."""
    raw = channel.unary_unary(IMAGES + "ListModels")(api.ListModelsRequest().SerializeToString(), timeout=timeout)
    ready = [m for m in api.ListModelsResponse.FromString(raw).models if m.ready]

    def first(kind: str) -> api.ModelInfo:
        found = [m for m in ready if m.kind == kind]
        assert found, f"the server has no ready {kind}"
        return found[0]

    classifier, generator, stylizer = first("classifier"), first("generator"), first("stylizer")
    rgb = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    return Targets(classifier=classifier.name, classifier_input=classifier.inputs[0].name,
                   classifier_size=int(classifier.inputs[0].shape[1]), generator=generator.name,
                   latent_size=int(generator.inputs[0].shape[1]), stylizer=stylizer.name,
                   image=encode_image(rgb, "png"))


# ------------------------------------------------------------------ valid messages to start from


def _classifier_infer(t: Targets, rows: int = 1) -> pb.ModelInferRequest:
    side = t.classifier_size
    return pb.ModelInferRequest(model_name=t.classifier, inputs=[pb.ModelInferRequest.InferInputTensor(
        name=t.classifier_input, datatype="UINT8", shape=[rows, side, side, 3])],
        raw_input_contents=[bytes(rows * side * side * 3)])


def _latent_infer(t: Targets) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=t.generator, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="latent", datatype="FP32", shape=[1, t.latent_size])], raw_input_contents=[bytes(4 * t.latent_size)])


def templates(t: Targets) -> dict[str, list[Message]]:
    """Valid request messages for every method (most would succeed)."""
    return {
        KSERVE + "ServerLive": [pb.ServerLiveRequest()],
        KSERVE + "ServerReady": [pb.ServerReadyRequest()],
        KSERVE + "ModelReady": [pb.ModelReadyRequest(name=t.classifier, version="")],
        KSERVE + "ServerMetadata": [pb.ServerMetadataRequest()],
        KSERVE + "ModelMetadata": [pb.ModelMetadataRequest(name=t.stylizer)],
        KSERVE + "ModelInfer": [_classifier_infer(t), _latent_infer(t)],
        KSERVE + "ModelStreamInfer": [_classifier_infer(t)],
        KSERVE + "ModelConfig": [pb.ModelConfigRequest(name=t.generator)],
        KSERVE + "ModelStatistics": [pb.ModelStatisticsRequest(name=t.classifier)],
        KSERVE + "RepositoryIndex": [pb.RepositoryIndexRequest(ready=True)],
        KSERVE + "RepositoryModelLoad": [pb.RepositoryModelLoadRequest(model_name=t.sacrificial)],
        KSERVE + "RepositoryModelUnload": [pb.RepositoryModelUnloadRequest(model_name=t.sacrificial)],
        IMAGES + "Classify": [api.ClassifyRequest(model=t.classifier, image=t.image, top_k=2)],
        IMAGES + "Generate": [api.GenerateRequest(model=t.generator, count=2, seed=1, format="jpeg")],
        IMAGES + "Stylize": [api.StylizeRequest(model=t.stylizer, image=t.image, format="png", max_side=32)],
        IMAGES + "StylizeStream": [api.StylizeRequest(model=t.stylizer, image=t.image, request_id="r")],
        IMAGES + "ListModels": [api.ListModelsRequest()],
        HEALTH_CHECK: [health_pb2.HealthCheckRequest(service=t.classifier)],
        REFLECTION: [reflection_pb2.ServerReflectionRequest(list_services="")],
    }


def good_cases(t: Targets) -> list[Case]:
    """Requests that must succeed: the server is alive and serving (the sacrificial model is not used)."""
    return [Case(IMAGES + "Classify", (api.ClassifyRequest(model=t.classifier, image=t.image).SerializeToString(),),
                 "good"),
            Case(KSERVE + "ModelInfer", (_classifier_infer(t).SerializeToString(),), "good"),
            Case(IMAGES + "Stylize", (api.StylizeRequest(model=t.stylizer, image=t.image).SerializeToString(),),
                 "good"),
            Case(KSERVE + "ServerLive", (b"",), "good")]


# ------------------------------------------------------------------ ways to go wrong


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG whose header claims width x height (and no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _mutate(r: random.Random, data: bytes) -> bytes:
    if not data:
        return r.randbytes(r.randint(1, 16))
    how = r.choice(("truncate", "flip", "insert", "repeat"))
    if how == "truncate":
        return data[:r.randrange(len(data))]
    if how == "flip":
        mutable = bytearray(data)
        for _ in range(r.randint(1, 8)):
            position = r.randrange(len(mutable))
            mutable[position] ^= 1 << r.randrange(8)
        return bytes(mutable)
    if how == "insert":
        position = r.randrange(len(data) + 1)
        return data[:position] + r.randbytes(r.randint(1, 32)) + data[position:]
    return data + data[:r.randint(1, len(data))]


def _name(r: random.Random) -> str:
    return r.choice(["", "nope", "../colours", "colours\x00", "a" * r.choice((256, 4096, 16384, 65536)),
                     "modèle", "\u202e" + "x" * 10, " ", "%s%n", r.randbytes(8).hex()])


def _random_bytes(r: random.Random, t: Targets) -> Case:
    method = r.choice(list(METHODS))
    size = r.choice((0, 1, 2, 3, r.randint(4, 64), r.randint(65, 4096), 100_000))
    count = r.randint(1, 4) if METHODS[method] else 1
    return Case(method, tuple(r.randbytes(size) for _ in range(count)), "random bytes")


def _mutated(r: random.Random, t: Targets) -> Case:
    method = r.choice(list(METHODS))
    message = r.choice(templates(t)[method])
    count = r.randint(1, 3) if METHODS[method] else 1
    return Case(method, tuple(_mutate(r, message.SerializeToString()) for _ in range(count)), "mutated")


def _names_and_versions(r: random.Random, t: Targets) -> Case:
    name, version = _name(r), r.choice(["", "abc", "-1", "0", "99999999999999999999", "\u0661", " 1", "1.0", "2"])
    method, message = r.choice([
        (KSERVE + "ModelReady", pb.ModelReadyRequest(name=name, version=version)),
        (KSERVE + "ModelMetadata", pb.ModelMetadataRequest(name=r.choice([name, t.classifier]), version=version)),
        (KSERVE + "ModelConfig", pb.ModelConfigRequest(name=name, version=version)),
        (KSERVE + "ModelStatistics", pb.ModelStatisticsRequest(name=name, version=version)),
        (KSERVE + "ModelInfer", pb.ModelInferRequest(model_name=name, model_version=version)),
        (KSERVE + "RepositoryIndex", pb.RepositoryIndexRequest(repository_name=name)),
        (KSERVE + "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=name, repository_name=name)),
        (IMAGES + "Classify", api.ClassifyRequest(model=name, image=t.image)),
        (IMAGES + "Generate", api.GenerateRequest(model=r.choice([name, t.classifier]))),
        (IMAGES + "Stylize", api.StylizeRequest(model=r.choice([name, t.classifier]), image=t.image)),
        (HEALTH_CHECK, health_pb2.HealthCheckRequest(service=name)),
        (REFLECTION, reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)),
        (REFLECTION, reflection_pb2.ServerReflectionRequest(file_by_filename=name)),
    ])
    return Case(method, (message.SerializeToString(),), "names and versions")


def _images(r: random.Random, t: Targets) -> Case:
    image = r.choice([b"", r.randbytes(r.randint(1, 2048)), t.image[:r.randrange(len(t.image))],
                      png_header(60_000, 60_000), png_header(0, 0), png_header(1, 2 ** 31 - 1),
                      _mutate(r, t.image), b"\xff\xd8\xff" + r.randbytes(100), b"GIF89a" + r.randbytes(20),
                      r.randbytes(1_000_000)])
    method, message = r.choice([
        (IMAGES + "Classify", api.ClassifyRequest(model=t.classifier, image=image,
                                                  top_k=r.choice([0, -1, 1, 1000, INT32_MAX, -INT32_MAX]))),
        (IMAGES + "Stylize", api.StylizeRequest(model=t.stylizer, image=image, max_side=r.choice([0, -1, 1, 16]))),
    ])
    return Case(method, (message.SerializeToString(),), "images")


def _options(r: random.Random, t: Targets) -> Case:
    fmt = r.choice(["", "png", "jpg", "JPEG", "bmp", "tiff", ".webp", "x" * 5000, "png\x00"])
    quality = r.choice([0, 1, 100, 101, -1, INT32_MAX, -INT32_MAX])
    method, message = r.choice([
        (IMAGES + "Generate", api.GenerateRequest(model=t.generator, count=r.choice([0, 1, -1, 8, 9, 65, INT32_MAX]),
                                                  seed=r.choice([0, -1, INT64_MAX, -INT64_MAX]), format=fmt,
                                                  quality=quality)),
        (IMAGES + "Stylize", api.StylizeRequest(model=t.stylizer, image=t.image, format=fmt, quality=quality,
                                                max_side=r.choice([0, -5, 1, 7, INT32_MAX]),
                                                request_id="q" * r.choice((0, 10, 100_000)))),
        (IMAGES + "Classify", api.ClassifyRequest(model=t.classifier, image=t.image,
                                                  top_k=r.choice([-1, 0, 3, INT32_MAX]))),
    ])
    return Case(method, (message.SerializeToString(),), "options")


def _tensors(r: random.Random, t: Targets) -> Case:
    request = r.choice([_classifier_infer(t), _latent_infer(t)])
    tensor = request.inputs[0]
    what = r.choice(["shape", "datatype", "raw size", "typed", "both", "inputs", "outputs", "raw count"])
    if what == "shape":
        del tensor.shape[:]
        tensor.shape.extend(r.choice([[], [0], [-1, 2], [2 ** 62, 2 ** 62], [1, 100_000, 100_000, 3],
                                      [INT64_MAX], [1] * 64, [1, t.classifier_size, t.classifier_size, 4],
                                      [100, t.classifier_size, t.classifier_size, 3]]))
    elif what == "datatype":
        tensor.datatype = r.choice(["FP16", "FP64", "INT64", "BOOL", "BYTES", "INT8", "uint8", "", "FP8", "x" * 300])
    elif what == "raw size":
        request.raw_input_contents[0] = request.raw_input_contents[0][:r.randrange(8)] + r.randbytes(r.randint(0, 9))
    elif what == "typed":
        del request.raw_input_contents[:]
        contents = r.choice(["fp32_contents", "int_contents", "bytes_contents", "uint64_contents", "bool_contents"])
        values = {"fp32_contents": [math.nan, math.inf, 1e38], "int_contents": [-1, INT32_MAX],
                  "bytes_contents": [b"x" * 5], "uint64_contents": [2 ** 64 - 1], "bool_contents": [True]}[contents]
        getattr(tensor.contents, contents).extend(values * r.randint(1, 50))
    elif what == "both":
        tensor.contents.uint_contents.extend([1, 2, 3])
    elif what == "inputs":
        extra = request.inputs.add()
        extra.CopyFrom(tensor)
        if r.random() < 0.5:
            extra.name = _name(r)
    elif what == "outputs":
        output = request.outputs.add(name=r.choice(["probabilities", "image", _name(r)]))
        output.parameters["classification"].int64_param = r.choice([0, -3, 1, 5, INT64_MAX])
    else:
        request.raw_input_contents.append(b"extra")
    return Case(KSERVE + "ModelInfer", (request.SerializeToString(),), f"tensors: {what}")


def _parameters(r: random.Random, t: Targets) -> Case:
    request = r.choice([_classifier_infer(t), _latent_infer(t)])
    key = r.choice(["timeout", "timeout", "timeout", "priority", "sequence_id", "sequence_start", "binary_data",
                    "unknown", "x" * 2000])
    parameter = request.parameters[key]
    kind = r.choice(["double_param", "int64_param", "string_param", "bool_param", "uint64_param"])
    value = {"double_param": r.choice([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, 5e-324, 250_000.0]),
             "int64_param": r.choice([-1, 0, 1, INT64_MAX, -INT64_MAX]),
             "string_param": r.choice(["", "10", "nan", "x" * 20_000]),
             "bool_param": r.choice([True, False]), "uint64_param": r.choice([0, 2 ** 64 - 1])}[kind]
    setattr(parameter, kind, value)
    if r.random() < 0.3:
        output = request.outputs.add(name=r.choice(["probabilities", "image"]))
        setattr(output.parameters[r.choice(["binary_data", "classification"])], kind, value)
    return Case(KSERVE + "ModelInfer", (request.SerializeToString(),), f"parameters: {key[:20]} {kind}")


def _load(r: random.Random, t: Targets) -> Case:
    config = r.choice([
        "", "{", "null", "[]", "[" * 100_000, '{"max_batch_size": "many"}', '{"max_batch_size": 1e999}',
        json.dumps({"dynamic_batching": {"max_queue_delay_microseconds": 3_600_000_000}}),
        json.dumps({"dynamic_batching": {"default_queue_policy": {"max_queue_size": 10 ** 9}}}),
        json.dumps({"instance_group": [{"count": 10 ** 6}]}), json.dumps({"max_batch_size": -7}),
        json.dumps({"max_batch_size": 2, "instance_group": [{"count": 1}]}),
        json.dumps({"name": "other", "unknown_field": [1, 2, 3]}), json.dumps({"x" * 10_000: 1}),
    ])
    request = pb.RepositoryModelLoadRequest(model_name=r.choice([t.sacrificial, t.sacrificial, _name(r)]))
    key = r.choice(["config", "config", "config", "file:1/model.onnx", "x" * 3000])
    if r.random() < 0.8:
        request.parameters[key].string_param = config
    else:
        request.parameters[key].int64_param = 5
    return Case(KSERVE + "RepositoryModelLoad", (request.SerializeToString(),), "load config")


def _streams(r: random.Random, t: Targets) -> Case:
    if r.random() < 0.5:
        method, good = IMAGES + "StylizeStream", api.StylizeRequest(model=t.stylizer, image=t.image)
        bad: list[Message] = [api.StylizeRequest(model=_name(r), image=t.image),
                              api.StylizeRequest(model=t.stylizer, image=r.randbytes(64)),
                              api.StylizeRequest(model=t.classifier, image=t.image),
                              api.StylizeRequest(model=t.stylizer, image=t.image, format="gif", max_side=-1)]
    else:
        method, good = KSERVE + "ModelStreamInfer", _classifier_infer(t)
        broken = _classifier_infer(t)
        broken.raw_input_contents[0] = b"short"
        bad = [pb.ModelInferRequest(model_name=_name(r)), broken, _latent_infer(t)]
        bad[-1].parameters["timeout"].double_param = math.nan
    messages = []
    for _ in range(r.randint(1, 24)):
        pick = r.random()
        if pick < 0.4:
            messages.append(good.SerializeToString())
        elif pick < 0.85:
            messages.append(r.choice(bad).SerializeToString())
        else:
            messages.append(_mutate(r, good.SerializeToString()))
    return Case(method, tuple(messages), "stream items")


STRATEGIES: tuple[Callable[[random.Random, Targets], Case], ...] = (
    _random_bytes, _random_bytes, _mutated, _mutated, _mutated, _names_and_versions, _images, _options, _tensors,
    _tensors, _parameters, _load, _streams)


def malformed_case(r: random.Random, t: Targets) -> Case:
    """One case from a strategy `r` picks."""
    return r.choice(STRATEGIES)(r, t)


def malformed_cases(t: Targets, seed: int, count: int) -> list[Case]:
    """`count` cases from every strategy, the same ones for the same seed."""
    r = random.Random(seed)
    return [malformed_case(r, t) for _ in range(count)]


# ------------------------------------------------------------------ sending and judging


def _in_band(method: str, responses: list[bytes]) -> list[str]:
    codes = []
    for raw in responses:
        if method == IMAGES + "StylizeStream":
            error = api.StylizeResponse.FromString(raw).error
            if error.code:
                codes.append(grpc.StatusCode(_STATUS_BY_NUMBER[error.code]).name
                             if error.code in _STATUS_BY_NUMBER else str(error.code))
        elif method == KSERVE + "ModelStreamInfer":
            message = pb.ModelStreamInferResponse.FromString(raw).error_message
            if message:
                codes.append(message.split(":", 1)[0])
    return codes


_STATUS_BY_NUMBER = {code.value[0]: code.value for code in grpc.StatusCode}


def send(channel: grpc.Channel, case: Case, timeout: float = 20, metadata=None) -> Outcome:
    """Send one case as raw bytes; what came back."""
    started = time.monotonic()
    try:
        if case.streaming:
            call = channel.stream_stream(case.method)(iter(case.messages), timeout=timeout, metadata=metadata)
            responses = list(call)
        else:
            channel.unary_unary(case.method)(case.messages[0], timeout=timeout, metadata=metadata)
            responses = []
    except grpc.RpcError as error:
        timed_out = error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started >= timeout
        return Outcome(error.code(), error.details() or "", timed_out=timed_out)
    return Outcome(grpc.StatusCode.OK, "", _in_band(case.method, responses))


def problems(outcome: Outcome, repository: Path) -> list[str]:
    """What is wrong with an outcome: UNKNOWN or INTERNAL (also per stream item), an unbounded message or one
    that names the repository's path, a missed deadline."""
    found = []
    if outcome.code in BAD_CODES:
        found.append(f"{outcome.code.name}: {outcome.details[:300]}")
    found += [f"in-band {code}" for code in outcome.in_band if code in ("UNKNOWN", "INTERNAL")]
    if outcome.timed_out:
        found.append("no answer before the client's deadline")
    if len(outcome.details) > MAX_MESSAGE_CHARS or "metadata size" in outcome.details:
        found.append(f"an unbounded message ({len(outcome.details)} characters: {outcome.details[:100]})")
    if str(repository.resolve().parent) in outcome.details:
        found.append(f"the repository's path in {outcome.details[:300]}")
    return found
