"""The errors a user can cause, each mapped to one gRPC status by serving/.

Every message is one sentence naming what was wrong and what is allowed.
"""


class ArtforgeError(Exception):
    """Base class of every error artforge raises on purpose."""

    grpc_code = "INTERNAL"


class InvalidInputError(ArtforgeError, ValueError):
    """Bad image bytes, wrong shape or dtype, bad option value."""

    grpc_code = "INVALID_ARGUMENT"


class NotFoundError(ArtforgeError, LookupError):
    """Unknown model, version, file or folder."""

    grpc_code = "NOT_FOUND"


class ModelLoadError(ArtforgeError):
    """A model artifact exists but is malformed or cannot be loaded."""

    grpc_code = "FAILED_PRECONDITION"


class ResourceExhaustedError(ArtforgeError):
    """Too large (image pixels, batch) or a full queue."""

    grpc_code = "RESOURCE_EXHAUSTED"


class ParityError(ArtforgeError):
    """An exported model disagrees with its PyTorch source."""

    grpc_code = "FAILED_PRECONDITION"


class WrongKindError(ArtforgeError):
    """The call needs another kind of model (e.g. classify with a stylizer)."""

    grpc_code = "FAILED_PRECONDITION"
