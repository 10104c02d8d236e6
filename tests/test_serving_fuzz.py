"""A few hundred seeded malformed requests over both gRPC services: never UNKNOWN or INTERNAL, bounded
messages without the repository's path, and a server that still serves after every batch (serving_fuzz.py)."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import grpc
import pytest
from serving_fuzz import METHODS, discover, good_cases, malformed_cases, problems, send
from serving_support import channel

SEED = 20250611
CASES = 400
BATCH = 25


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    # Model control on (from loopback) so that load requests reach the configuration checks.
    return {"model_control": "explicit", "max_request_batch": 8}


def test_malformed_requests_never_break_the_server(server, repo_path: Path, caplog) -> None:
    found: list[str] = []
    codes: collections.Counter[str] = collections.Counter()
    with caplog.at_level(logging.INFO, logger="artforge.serving"), channel(server) as ch:
        targets = discover(ch)
        cases = malformed_cases(targets, SEED, CASES)
        assert {case.method for case in cases} == set(METHODS)  # every method is hit
        assert any(case.what == "random bytes" for case in cases)
        for start in range(0, len(cases), BATCH):
            for case in cases[start:start + BATCH]:
                outcome = send(ch, case)
                codes[outcome.code.name] += 1
                found += [f"{case.what} -> {case.method}: {problem}" for problem in problems(outcome, repo_path)]
            for good in good_cases(targets):
                outcome = send(ch, good)
                assert outcome.code == grpc.StatusCode.OK, (f"after cases {start}..{start + BATCH}", good.method,
                                                            outcome)
    assert not found, "\n".join(found)
    # The generator reaches the server's checks, not only the protobuf parser.
    assert {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "OK"} <= set(codes), codes
    # No tracebacks: undecodable requests make one rate-limited line, nothing is logged at ERROR.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) <= 2
