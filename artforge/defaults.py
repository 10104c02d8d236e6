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
