"""The HTTP front end's ASGI application: routes, the token check, errors as `{"error": ...}`.

Built once per server over the same request objects the gRPC servicers
use (`Services`), so an HTTP request and a gRPC request of the same kind run
the same code after their wire format is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

import artforge
from artforge.serving.auth import BearerToken
from artforge.serving.calls import Calls
from artforge.serving.http import schemas
from artforge.serving.http.errors import HttpError, http_error
from artforge.serving.image_requests import ImageRequests
from artforge.serving.kserve_requests import KServeRequests
from artforge.serving.model_manager import ModelManager
from artforge.serving.options import ServerOptions

T = TypeVar("T")
OK = grpc.StatusCode.OK
UNAUTHENTICATED_MESSAGE = "missing or wrong credentials: send the header 'Authorization: Bearer <token>'"


@dataclass
class Services:
    """What the routes serve with: the shared request objects, the Calls that count HTTP requests, limits."""

    kserve: KServeRequests
    images: ImageRequests
    calls: Calls
    manager: ModelManager
    executor: Executor
    options: ServerOptions
    token: BearerToken | None = None

    async def answer(self, method: str, model: str, work: Callable[[], Awaitable[T]], per_model: bool = True) -> T:
        """Run one request through Calls (metrics, statistics, status); raise its HttpError when it fails."""
        caught: list[BaseException] = []

        async def guarded() -> T:
            try:
                return await work()
            except Exception as error:
                caught.append(error)
                raise
        result, code, message = await self.calls.call(method, model, guarded, per_model)
        if code is not OK:
            raise http_error(code, message, caught[0] if caught else None)
        return result  # type: ignore[return-value]  # OK means work() returned


def token_check(token: BearerToken | None) -> Callable[..., Awaitable[None]]:
    """A route dependency: the bearer token when the server has one (auth.BearerToken, the check gRPC uses;
    documented in OpenAPI as the HTTPBearer scheme)."""
    bearer = HTTPBearer(auto_error=False, description="the server's --token, when it has one")

    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is not None and not token.accepts(request.headers.get("authorization")):
            raise HttpError(401, UNAUTHENTICATED_MESSAGE, {"WWW-Authenticate": "Bearer"})
    return check


def peer_of(request: Request) -> str:
    """The caller's address in gRPC's peer form ("ipv4:HOST:PORT"), for auth.check_model_control."""
    if request.client is None:
        return ""
    host, port = request.client.host, request.client.port
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_sentence(error: RequestValidationError) -> str:
    """FastAPI's list of validation problems as one sentence naming the first one."""
    problems = error.errors()
    if not problems:
        return "the request is not valid"
    first = problems[0]
    where = " ".join(str(part) for part in first.get("loc", ()) if part not in ("body",))
    return f"{where or 'the request'}: {first.get('msg', 'is not valid')}".replace("query ", "query parameter ", 1)


def build_app(services: Services) -> FastAPI:
    """The ASGI app: KServe v2 REST, the image endpoints, the web page, /openapi.json."""
    from artforge.serving.http import image_routes, kserve_routes, web

    app = FastAPI(
        title="artforge", version=artforge.__version__, docs_url=None, redoc_url=None,
        description="KServe v2 / Open Inference Protocol over HTTP (with Triton's binary tensor data extension), "
                    "image endpoints, and a web page, beside the same server's gRPC services.")
    secured = [Depends(token_check(services.token))]
    app.include_router(kserve_routes.health_router(services))
    app.include_router(kserve_routes.router(services), dependencies=secured)
    app.include_router(image_routes.router(services), dependencies=secured)
    app.include_router(web.router())

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the schemas of the bodies the routes read by hand (infer, load/unload)."""
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (schemas.InferenceRequest, schemas.RepositoryRequest):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(HttpError)
    async def on_http_error(request: Request, error: HttpError) -> JSONResponse:
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_sentence(error))

    @app.exception_handler(StarletteHTTPException)
    async def on_starlette(request: Request, error: StarletteHTTPException) -> JSONResponse:
        path = request.url.path if len(request.url.path) <= 80 else request.url.path[:80] + "..."
        message = {404: f"no such endpoint: {request.method} {path}",
                   405: f"{request.method} is not allowed on {path}"}.get(error.status_code, str(error.detail))
        return _error(error.status_code, message, getattr(error, "headers", None))

    return app
