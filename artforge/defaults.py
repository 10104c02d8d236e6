"""Defaults that several entry points share (in-process API, CLI, batch tool, server, client).

One constant each, so that the same command gives the same result locally,
through --server and through the API. Plain Python: the CLI imports this to
show defaults in --help without loading OpenCV or ONNX Runtime.
"""

#: (label, probability) pairs a classification returns
TOP_K = 5
#: JPEG / WebP encoder quality (1-100) when none is given
QUALITY = 90
#: images a generate call makes when no count is given
GENERATE_COUNT = 1
#: environment variable holding the bearer token of a server (server and client side)
TOKEN_ENV = "ARTFORGE_TOKEN"
#: stylize images with more megapixels than this tile by tile (batch tool and server), in TILE-pixel tiles
TILE_ABOVE_MP = 4.0
#: the side of a stylizer tile: a style network's buffers for it fit comfortably in memory
TILE = 1024
#: how tiles get the whole image's normalisation statistics: "estimate" (from a downscale: one extra small run)
#: or "exact" (one more pass over the tiles per instance-norm layer: ~15x the time); docs/batch.md measures both
TILE_STATS = "estimate"
TILE_STATS_MODES = ("estimate", "exact")
#: seconds per client call to a server, retries included; a 4K stylization on a busy CPU server takes seconds
CLIENT_TIMEOUT_S = 60.0
#: times a client call is retried while the server is unavailable
CLIENT_RETRIES = 3
#: largest image decoded, checked from its header: 8192 x 8192, larger than any camera photo, small
#: enough to bound memory (the in-process runtime and the server; `artforge stylize` has its own)
MAX_IMAGE_PIXELS = 1 << 26
