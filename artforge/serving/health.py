"""grpc.health.v1: the overall entry ("") and one per model.

The overall entry stays open to load balancers and Kubernetes probes, which
send no credentials; it says only SERVING or NOT_SERVING. A per-model entry
says whether a model of that name exists and is ready, so when the server
has a token it needs the token, like every other RPC (auth.py lets the
health service through and leaves this check to it, because only the
request tells which entry is asked for).
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from artforge.serving.auth import UNAUTHENTICATED_MESSAGE, BearerToken


class HealthServicer(health_aio.HealthServicer):
    def __init__(self, token: BearerToken | None = None) -> None:
        super().__init__()
        self._token = token

    async def _check_access(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        if request.service and self._token is not None and not self._token.authorizes(context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        await self._check_access(request, context)
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        await self._check_access(request, context)
        await super().Watch(request, context)
