"""artforge.serving: the gRPC server (never imports torch, onnx, training/ or export/).

    from artforge.serving.options import ServerOptions
    from artforge.serving.server import Server, serve

    server = Server(ServerOptions(repo="zoo/repository", host="127.0.0.1", port=0))
    port = server.start()          # KServe v2 + artforge.v1.ImageService + health + reflection
    server.stop(grace=5)

Modules: server (start/stop, signals, the threading model), model_manager
(load / unload / reload), batcher (dynamic batching per model), kserve and
image_api (the two services), tensors (KServe datatypes), settings
(config.pbtxt + flags), calls / status (errors to gRPC codes, metrics and
statistics per request), metrics (Prometheus), auth (bearer token, model
control), health (overall and per-model health), request_decoding
(undecodable requests answered INVALID_ARGUMENT), memory (the request
memory budget), options (ServerOptions; `artforge serve` builds one in
artforge/cli/serve.py). docs/security.md says what is exposed to whom.
"""
