"""Dynamic batching, back-pressure, deadlines and cancellation, on a real server.

Batching settings come from each model's config.pbtxt, as in production;
long queue delays make the waits deterministic without slow models.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx_builders import add_model, classifier_model, stylizer_model
from serving_support import encode, image_stub, kserve_stub, noise, rpc_error

from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.runtime import Repository
from artforge.serving.options import ServerOptions
from artforge.serving.settings import read_config, resolve_settings

RED = np.zeros((1, 8, 8, 3), np.uint8)
RED[..., 0] = 255

CONFIGS = {
    # Waits up to 2 s for a batch of 8.
    "batched": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000000 }\n",
    # Would wait 20 s, but 8 rows fill the batch and go at once.
    "full": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 20000000 }\n",
    # Would wait 20 s, but 2 rows make a preferred batch and go at once.
    "preferred": "max_batch_size: 8\ndynamic_batching { preferred_batch_size: [2] "
                 "max_queue_delay_microseconds: 20000000 }\n",
    # Holds requests for 1 s in a queue of 2.
    "narrow": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000000 "
              "default_queue_policy { max_queue_size: 2 } }\ninstance_group [{ count: 2 }]\n",
    # Like narrow, for the cancellation test alone.
    "lonely": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000000 "
              "default_queue_policy { max_queue_size: 2 } }\n",
    "swapped": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500000 }\n",
    "badconfig": "max_batch_size: [oops\n",
}


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"model_control": "explicit"}  # test_reload_while_a_request_is_queued loads over gRPC


@pytest.fixture(scope="module")
def repo_path(repo_path: Path) -> Path:
    """The shared test repository plus a model per batching setting."""
    for name, config in CONFIGS.items():
        add_model(repo_path, name, classifier_model(), config=config)
    add_model(repo_path, "fixed4", classifier_model(batch=4))
    add_model(repo_path, "styles", stylizer_model(),
              config="max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 1000000 }\n")
    return repo_path


def infer_request(model: str, images: np.ndarray = RED, **fields) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=images.shape)
    return pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[images.tobytes()], **fields)


def probabilities(response: pb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], np.float32).reshape(tuple(response.outputs[0].shape))


def statistics(ch: grpc.Channel, model: str) -> pb.ModelStatistics:
    return kserve_stub(ch).ModelStatistics(pb.ModelStatisticsRequest(name=model)).model_stats[0]


def test_concurrent_requests_share_batches(server, ch) -> None:
    stub = kserve_stub(ch)
    futures = [stub.ModelInfer.future(infer_request("batched"), timeout=10) for _ in range(8)]
    for future in futures:
        assert probabilities(future.result()).argmax() == 0
    stats = statistics(ch, "batched")
    assert stats.inference_count == 8
    sizes = {b.batch_size for b in stats.batch_stats}
    assert max(sizes) > 1 and stats.execution_count < 8, sizes
    registry = server.metrics.registry
    count = registry.get_sample_value("artforge_batch_size_count", {"model": "batched"})
    assert count == stats.execution_count
    assert registry.get_sample_value("artforge_batch_size_sum", {"model": "batched"}) == 8


def test_full_batch_is_sent_without_waiting_out_the_delay(ch) -> None:
    stub = kserve_stub(ch)
    # A 10 s deadline, half the 20 s queue delay: the calls succeed only if the full batch went at once.
    futures = [stub.ModelInfer.future(infer_request("full"), timeout=10) for _ in range(8)]
    for future in futures:
        assert probabilities(future.result()).argmax() == 0
    assert [b.batch_size for b in statistics(ch, "full").batch_stats] == [8]


def test_preferred_batch_size_is_sent_at_once(ch) -> None:
    stub = kserve_stub(ch)
    # As above: a deadline far below the 20 s queue delay.
    futures = [stub.ModelInfer.future(infer_request("preferred"), timeout=10) for _ in range(2)]
    for future in futures:
        future.result()
    assert [b.batch_size for b in statistics(ch, "preferred").batch_stats] == [2]


def test_stylizer_batches_only_equal_sizes(ch) -> None:
    stub = image_stub(ch)
    small = [noise(8, 8, seed=i) for i in range(4)]
    large = [noise(12, 12, seed=10 + i) for i in range(2)]
    futures = [stub.Stylize.future(api.StylizeRequest(model="styles", image=encode(image)), timeout=10)
               for image in small + large]
    for future, image in zip(futures, small + large, strict=True):
        response = future.result()
        assert (response.height, response.width) == image.shape[:2]
    assert sorted(b.batch_size for b in statistics(ch, "styles").batch_stats) == [2, 4]


def test_fixed_batch_graph_is_padded(ch) -> None:
    stub = kserve_stub(ch)
    images = np.zeros((3, 8, 8, 3), np.uint8)
    for i in range(3):
        images[i, ..., i] = 255
    assert list(probabilities(stub.ModelInfer(infer_request("fixed4", images))).argmax(axis=1)) == [0, 1, 2]
    assert probabilities(stub.ModelInfer(infer_request("fixed4"))).shape == (1, 3)
    error = rpc_error(stub.ModelInfer, infer_request("fixed4", np.zeros((5, 8, 8, 3), np.uint8)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_batch_size of 4" in error.details()


def test_full_queue_is_refused_at_once(server, ch) -> None:
    stub = kserve_stub(ch)
    waiting = [stub.ModelInfer.future(infer_request("narrow"), timeout=10) for _ in range(2)]
    time.sleep(0.2)  # both are queued, waiting out the 1 s delay
    error = rpc_error(stub.ModelInfer, infer_request("narrow"), timeout=10)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "model narrow has 2 requests waiting" in error.details()
    assert not any(future.done() for future in waiting)  # refused at once, not after the queue moved
    for future in waiting:
        assert probabilities(future.result()).argmax() == 0
    stub.ModelInfer(infer_request("narrow"), timeout=10)  # room again
    failures = server.metrics.registry.get_sample_value(
        "artforge_request_failures_total", {"model": "narrow", "method": "ModelInfer", "code": "RESOURCE_EXHAUSTED",
                                            "protocol": "grpc"})
    assert failures == 1


def test_expired_deadline_is_dropped_before_inference(server, ch) -> None:
    stub = kserve_stub(ch)
    before = statistics(ch, "narrow")
    # KServe's `timeout` parameter (microseconds): the server itself answers DEADLINE_EXCEEDED.
    timeout = {"timeout": pb.InferParameter(int64_param=100_000)}
    error = rpc_error(stub.ModelInfer, infer_request("narrow", parameters=timeout), timeout=10)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    assert "deadline passed" in error.details()
    after = statistics(ch, "narrow")
    assert after.inference_count == before.inference_count  # never reached the graph
    assert after.inference_stats.fail.count == before.inference_stats.fail.count + 1
    # A gRPC deadline too.
    error = rpc_error(image_stub(ch).Classify, api.ClassifyRequest(model="narrow", image=encode(RED[0])),
                      timeout=0.2)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert server.metrics.registry.get_sample_value(
        "artforge_request_failures_total",
        {"model": "narrow", "method": "ModelInfer", "code": "DEADLINE_EXCEEDED", "protocol": "grpc"}) == 1


def wait_for(condition, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_cancelled_call_frees_its_place(server, ch) -> None:
    stub = kserve_stub(ch)
    registry = server.metrics.registry
    doomed = stub.ModelInfer.future(infer_request("lonely"), timeout=10)
    wait_for(lambda: registry.get_sample_value("artforge_queue_depth", {"model": "lonely"}) == 1, "the queued call")
    doomed.cancel()
    wait_for(lambda: registry.get_sample_value("artforge_request_failures_total", {
        "model": "lonely", "method": "ModelInfer", "code": "CANCELLED", "protocol": "grpc"}) == 1,
        "the server to see the cancel")
    # The queue holds 2: the cancelled request must no longer count.
    futures = [stub.ModelInfer.future(infer_request("lonely"), timeout=10) for _ in range(2)]
    for future in futures:
        assert probabilities(future.result()).argmax() == 0


def test_reload_while_a_request_is_queued(ch) -> None:
    stub = kserve_stub(ch)
    queued = stub.ModelInfer.future(infer_request("swapped"), timeout=10)  # waits 0.5 s for company
    time.sleep(0.1)
    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="swapped"), timeout=10)
    # The old model finishes what it holds; the new one starts with fresh statistics.
    assert probabilities(queued.result()).argmax() == 0
    assert statistics(ch, "swapped").inference_count == 0
    assert probabilities(stub.ModelInfer(infer_request("swapped"), timeout=10)).argmax() == 0
    assert statistics(ch, "swapped").inference_count == 1


def test_bad_config_is_reported_while_others_serve(ch) -> None:
    index = {m.name: m for m in kserve_stub(ch).RepositoryIndex(pb.RepositoryIndexRequest()).models}
    assert index["badconfig"].state == "UNAVAILABLE"
    assert "config.pbtxt is not a valid Triton model configuration" in index["badconfig"].reason
    assert index["batched"].state == "READY"


def test_instances_from_config(ch) -> None:
    config = kserve_stub(ch).ModelConfig(pb.ModelConfigRequest(name="narrow")).config
    assert config.instance_group[0].count == 2
    assert config.dynamic_batching.max_queue_delay_microseconds == 1_000_000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 2


# ------------------------------------------------------------------ settings without a server


def test_flags_override_config(repo_path: Path) -> None:
    model = Repository(repo_path).load("narrow", threads=1)
    config = read_config(repo_path / "narrow")
    from_file = resolve_settings(model, config, ServerOptions(repo=repo_path))
    assert (from_file.max_batch_size, from_file.max_queue_delay_s, from_file.queue_size, from_file.instances) == \
        (8, 1.0, 2, 2)
    flags = ServerOptions(repo=repo_path, max_batch_size=4, max_queue_delay_ms=2, preferred_batch_sizes=(2, 16),
                          instances=3, queue_size=5)
    settings = resolve_settings(model, config, flags)
    assert (settings.max_batch_size, settings.max_queue_delay_s, settings.queue_size, settings.instances) == \
        (4, 0.002, 5, 3)
    assert settings.preferred_batch_sizes == (2,)  # 16 can never be formed under a max of 4


def test_fixed_graph_batch_beats_flags(repo_path: Path) -> None:
    model = Repository(repo_path).load("fixed4", threads=1)
    settings = resolve_settings(model, None, ServerOptions(repo=repo_path, max_batch_size=32))
    assert settings.max_batch_size == 4
    # The batcher hands merged rows to model.run, which pads them to the graph's fixed batch.
    assert model.run({"image": np.zeros((3, 8, 8, 3), np.uint8)})["probabilities"].shape == (3, 3)
