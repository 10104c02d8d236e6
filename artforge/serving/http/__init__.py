"""The HTTP front end of `artforge serve`: KServe v2 REST, image endpoints, the web page, /openapi.json.

FastAPI (Starlette) routes served by uvicorn on the gRPC server's own event
loop (listener.py): the handlers await the same batchers, memory budget and
worker pool as gRPC, through the same request objects (image_requests.py,
kserve_requests.py). Modules: app (the ASGI app, token check, errors),
kserve_routes (KServe v2 REST + Triton's binary tensor data extension),
image_routes (/v1/models/...), web (the page at /), schemas (JSON bodies,
for OpenAPI), errors (statuses), listener (uvicorn on a bound socket).
"""
