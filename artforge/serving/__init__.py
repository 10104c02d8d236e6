"""artforge.serving: the server, gRPC and HTTP front ends over one core (never imports torch, onnx, training/ or
export/).

    from artforge.serving.options import ServerOptions
    from artforge.serving.server import Server, serve

    server = Server(ServerOptions(repo="zoo/repository", host="127.0.0.1", port=0))
    port = server.start()          # gRPC: KServe v2 + artforge.v1.ImageService + health + reflection
    server.http_port               # HTTP: KServe v2 REST, /v1 image endpoints, the web page (http_port=None: off)
    server.stop(grace=5)

Modules: server (start/stop, signals, the threading model), model_manager
(load / unload / reload), batcher (dynamic batching per model),
image_requests and kserve_requests (what every front end serves, in plain
Python), kserve and image_api (the two gRPC services), http/ (the HTTP front
end), tensors (KServe datatypes), settings
(config.pbtxt + flags), calls / status (errors to gRPC codes, metrics and
statistics per request), metrics (Prometheus), auth (bearer token, model
control), health (overall and per-model health), request_decoding
(undecodable requests answered INVALID_ARGUMENT), memory (the request
memory budget), options (ServerOptions; `artforge serve` builds one in
artforge/cli/serve.py). docs/security.md says what is exposed to whom.
"""
