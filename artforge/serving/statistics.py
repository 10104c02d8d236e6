"""Per-model inference statistics in the shape of KServe's ModelStatistics.

Counters start at zero when a model (re)loads, as Triton's do. They are only
touched from the event loop thread, after the executor hands results back,
so they need no lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from artforge.proto.inference import grpc_service_pb2 as pb


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += max(ns, 0)

    def to_proto(self) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=self.count, ns=self.ns)


@dataclass
class BatchStats:
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class ModelStats:
    """Cumulative counts and durations of one loaded model version."""

    def __init__(self, name: str, version: int) -> None:
        self.name, self.version = name, version
        self.success, self.fail, self.queue = Duration(), Duration(), Duration()
        self.compute_input, self.compute_infer, self.compute_output = Duration(), Duration(), Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.batches: dict[int, BatchStats] = {}

    def record_request(self, ok: bool, ns: int) -> None:
        (self.success if ok else self.fail).add(ns)

    def record_batch(self, size: int, queue_ns: list[int], input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One graph run of `size` rows made of len(queue_ns) requests."""
        self.execution_count += 1
        self.inference_count += size
        self.last_inference_ms = time.time_ns() // 1_000_000
        requests = len(queue_ns)
        for waited in queue_ns:
            self.queue.add(waited)
        # Per request, each request counts the whole batch's time (Triton's convention).
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        stats = self.batches.setdefault(size, BatchStats(Duration(), Duration(), Duration()))
        stats.compute_input.add(input_ns)
        stats.compute_infer.add(infer_ns)
        stats.compute_output.add(output_ns)

    def record_pre_post(self, input_ns: int = 0, output_ns: int = 0) -> None:
        """Request-side work outside the batch: parsing or decoding before, encoding after."""
        if input_ns:
            self.compute_input.ns += input_ns
        if output_ns:
            self.compute_output.ns += output_ns

    def to_proto(self) -> pb.ModelStatistics:
        return pb.ModelStatistics(
            name=self.name, version=str(self.version), last_inference=self.last_inference_ms,
            inference_count=self.inference_count, execution_count=self.execution_count,
            inference_stats=pb.InferStatistics(
                success=self.success.to_proto(), fail=self.fail.to_proto(), queue=self.queue.to_proto(),
                compute_input=self.compute_input.to_proto(), compute_infer=self.compute_infer.to_proto(),
                compute_output=self.compute_output.to_proto(), cache_hit=pb.StatisticDuration(),
                cache_miss=pb.StatisticDuration()),
            batch_stats=[pb.InferBatchStatistics(batch_size=size, compute_input=s.compute_input.to_proto(),
                                                  compute_infer=s.compute_infer.to_proto(),
                                                  compute_output=s.compute_output.to_proto())
                         for size, s in sorted(self.batches.items())])
