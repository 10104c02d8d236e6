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


#: longest client-supplied text an error message quotes; longer text is cut (the whole message
#: travels in a gRPC trailer, which has a size limit, and is read by people)
QUOTE_CHARS = 64


def shortened(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters, with an ellipsis and the full length when it was longer."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` as a message quotes what a client sent: repr() of its text, cut to `limit` characters with an
    ellipsis and the full length, so a 16 KiB model name still gives a one-line NOT_FOUND."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def listed(names: list[str], most: int = 16) -> str:
    """Comma-separated names for a message ("none" when empty), at most `most` of them and how many more."""
    if not names:
        return "none"
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"
