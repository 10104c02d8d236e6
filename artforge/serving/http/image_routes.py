"""Image endpoints that need no client library: curl, browsers, any HTTP client.

    curl --data-binary @photo.jpg 'http://HOST:8000/v1/models/mosaic/stylize?format=jpeg' -o out.jpg
    curl --data-binary @photo.jpg 'http://HOST:8000/v1/models/art_style/classify?top_k=3'
    curl -X POST 'http://HOST:8000/v1/models/dcgan/generate?count=8&seed=1&grid=4' -o grid.png

The image is the request body (any content type), or the `image` field of a
multipart form (what an HTML form sends). Options are query parameters; a
`timeout` (seconds) bounds the wait. Results: JSON labels, or the encoded
image with its Content-Type (several generated images: a zip, or one contact
sheet with `grid`). Every call is image_requests.ImageRequests, as gRPC's
ImageService; errors are `{"error": ...}` with gRPC's sentence.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from artforge.errors import InvalidInputError
from artforge.serving.calls import deadline_in
from artforge.serving.http import schemas
from artforge.serving.http.app import Services
from artforge.serving.http.kserve_routes import read_body
from artforge.serving.image_requests import Generated, Stylized, list_models

_MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_IMAGE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}}}}}}}
_IMAGE_OUT: dict[str, Any] = {"description": "The encoded image", "content": {
    media: {"schema": {"type": "string", "format": "binary"}} for media in _MEDIA.values()}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse, "description": text}
    for status, text in ((400, "Bad image or option, or a model of another kind"), (401, "Missing or wrong token"),
                         (404, "Unknown model"), (413, "Image or body too large"),
                         (429, "Busy: retry after Retry-After seconds"), (503, "Model not ready"),
                         (504, "The timeout passed"))}


def _timeout(seconds: float | None) -> float | None:
    if seconds is not None and not seconds >= 0:
        raise InvalidInputError(f"timeout must be a non-negative number of seconds (0 = none), got {seconds}")
    return seconds or None


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def image_of(request: Request, services: Services, model: str) -> bytes:
    """The image a request carries: its body, or the `image` file of a multipart form (an unknown model is
    refused before the body is read)."""
    services.manager.resolve(model)
    body = await read_body(request, services.options.max_message_bytes)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        try:
            form = await MultiPartParser(request.headers, _once(body), max_files=1, max_fields=16).parse()
        except MultiPartException as error:
            raise InvalidInputError(f"the multipart form cannot be read ({error.message})") from None
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise InvalidInputError("the multipart form needs a file field named 'image'")
        body = await image.read()
    if not body:
        raise InvalidInputError("the request has no image: send its bytes as the body (or an 'image' form field)")
    return body


def _image_response(data: bytes, fmt: str, name: str, headers: dict[str, str]) -> Response:
    extension = "jpg" if fmt == "jpeg" else fmt
    return Response(data, media_type=_MEDIA[fmt],
                    headers={"Content-Disposition": f'inline; filename="{name}.{extension}"', **headers})


def _zip(result: Generated) -> bytes:
    buffer = io.BytesIO()
    extension = "jpg" if result.format == "jpeg" else result.format
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # images are compressed already
        for i, image in enumerate(result.images):
            archive.writestr(f"{result.model}-{result.seed}-{i:03d}.{extension}", image)
    return buffer.getvalue()


def router(services: Services) -> APIRouter:
    images = services.images
    api = APIRouter(prefix="/v1", tags=["images"], responses=_ERRORS)

    @api.get("/models", response_model=schemas.ModelListResponse, summary="Every model: kind, versions, readiness")
    async def models() -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            listing = await list_models(services.manager, services.executor)
            return {"models": [m.__dict__ | {"inputs": [t.__dict__ for t in m.inputs],
                                              "outputs": [t.__dict__ for t in m.outputs]} for m in listing]}
        return await services.answer("ListModels", "", work, per_model=False)

    @api.post("/models/{name}/classify", response_model=schemas.ClassifyResponse, openapi_extra=_IMAGE_BODY,
              summary="Labels of one image, best first")
    async def classify(name: str, request: Request, top_k: int = 0, timeout: float | None = None) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            deadline = deadline_in(_timeout(timeout))
            result = await images.classify(name, await image_of(request, services, name), top_k, deadline,
                                           "the request's image", "classify")
            return {"model": result.model, "model_version": str(result.version),
                    "labels": [label.__dict__ for label in result.labels]}
        return await services.answer("Classify", name, work)

    @api.post("/models/{name}/stylize", openapi_extra=_IMAGE_BODY, response_class=Response,
              responses={200: _IMAGE_OUT}, summary="One image in the model's style")
    async def stylize(name: str, request: Request, format: str = "", quality: int = 0, max_side: int = 0,
                      timeout: float | None = None) -> Response:
        async def work() -> Stylized:
            deadline = deadline_in(_timeout(timeout))
            return await images.stylize(name, await image_of(request, services, name), max_side, format, quality,
                                        deadline, "the request's image", "stylize")
        result = await services.answer("Stylize", name, work)
        return _image_response(result.image, result.format, f"{result.model}", {
            "Artforge-Model": result.model, "Artforge-Model-Version": str(result.version),
            "Artforge-Width": str(result.width), "Artforge-Height": str(result.height)})

    @api.post("/models/{name}/generate", response_class=Response, summary="Images from a generator", responses={
        200: {"description": "One image (count 1, or a grid), else a zip of the images", "content": {
            **_IMAGE_OUT["content"], "application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
    async def generate(name: str, count: int = 1, seed: int | None = None, format: str = "", quality: int = 0,
                       grid: int = 0, timeout: float | None = None) -> Response:
        async def work() -> Generated:
            deadline = deadline_in(_timeout(timeout))
            return await images.generate(name, count, seed, format, quality, deadline, "generate", grid)
        result = await services.answer("Generate", name, work)
        headers = {"Artforge-Model": result.model, "Artforge-Model-Version": str(result.version),
                   "Artforge-Seed": str(result.seed)}
        if len(result.images) == 1:
            return _image_response(result.images[0], result.format, f"{result.model}-{result.seed}", headers)
        return Response(_zip(result), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{result.model}-{result.seed}.zip"', **headers})

    return api
