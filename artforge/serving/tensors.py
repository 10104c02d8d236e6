"""KServe v2 tensors <-> numpy: datatypes, raw and typed contents, lossless conversion.

Rules a client can rely on (each violation is INVALID_ARGUMENT naming the input):

- Data comes either in `raw_input_contents` (little-endian, row-major; BYTES
  elements each prefixed by a 4-byte little-endian length) for every input,
  or in each input's typed `contents` field. FP16 has no typed field, so it
  must be raw.
- The element count must match the shape exactly.
- A datatype other than the model's is converted when no value can change:
  any float to a wider or narrower float unless a value overflows (FP16 or
  FP64 latents into an FP32 input), integers to integers when every value
  fits (INT64 pixels 0..255 into UINT8), integers to floats when every
  value is exactly representable. Floats never become integers (a float
  image is almost always normalised pixels, which would silently turn
  black), and BOOL / BYTES never convert.
"""

from __future__ import annotations

import struct

import numpy as np

from artforge.errors import InvalidInputError, quoted
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.proto.inference import model_config_pb2 as mc

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# The typed-contents field each datatype uses; narrow integers widen (see the proto).
_CONTENTS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
# Integers up to 2**mantissa bits are exact in a float.
_EXACT_INT = {np.dtype(np.float16): 2 ** 11, np.dtype(np.float32): 2 ** 24, np.dtype(np.float64): 2 ** 53}
_SUPPORTED = ", ".join(DATATYPES)


def datatype_of(dtype: np.dtype) -> str:
    """The KServe v2 name of a numpy dtype ("UINT8", "FP32", ...)."""
    return _NAMES.get(np.dtype(dtype), "BYTES")


def has_typed_contents(dtype: np.dtype) -> bool:
    """Whether InferTensorContents has a field for this dtype (FP16 has none)."""
    return datatype_of(dtype) in _CONTENTS


def config_type(dtype: np.dtype) -> mc.DataType:
    """The model_config DataType enum value (TYPE_UINT8, ...); BYTES is TYPE_STRING."""
    name = datatype_of(dtype)
    return mc.TYPE_STRING if name == "BYTES" else mc.DataType.Value(f"TYPE_{name}")  # type: ignore[return-value]


def _describe_shape(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _parse_bytes_elements(raw: bytes, count: int, what: str) -> np.ndarray:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"{what}: BYTES raw data ends inside an element's 4-byte length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInputError(f"{what}: a BYTES element claims {length} bytes but only "
                                    f"{len(raw) - offset} remain")
        elements.append(raw[offset:offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidInputError(f"{what}: BYTES raw data holds {len(elements)} elements; the shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _declared(datatype: str, shape: tuple[int, ...], what: str) -> tuple[np.dtype, int]:
    """The numpy dtype and element count of a declared datatype and shape (checked)."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidInputError(f"{what} has datatype {quoted(datatype)}; supported: {_SUPPORTED}")
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"{what} has shape {_describe_shape(shape)}; dimensions must not be negative")
    return dtype, int(np.prod(shape, dtype=object)) if shape else 1


def parse_raw(datatype: str, shape: tuple[int, ...], raw: bytes, what: str) -> np.ndarray:
    """Raw tensor bytes (little-endian, row-major; BYTES length-prefixed) as an array of the declared datatype
    and shape: gRPC's raw_input_contents, HTTP's binary tensor data."""
    dtype, count = _declared(datatype, shape, what)
    if datatype == "BYTES":
        return _parse_bytes_elements(raw, count, what).reshape(shape)
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise InvalidInputError(f"{what}: raw data is {len(raw)} bytes but shape {_describe_shape(shape)} "
                                f"of {datatype} needs {needed}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _in_range(wide: np.ndarray, dtype: np.dtype, datatype: str, what: str) -> np.ndarray:
    if wide.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInputError(f"{what} has values outside the {datatype} range {info.min}..{info.max}")
    return wide.astype(dtype)


def parse_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """One gRPC request input as a numpy array of its declared datatype and shape."""
    what = f"input {quoted(tensor.name)}"
    shape = tuple(tensor.shape)
    dtype, count = _declared(tensor.datatype, shape, what)
    typed = tensor.HasField("contents") and tensor.contents.ByteSize() > 0
    if raw is not None:
        if typed:
            raise InvalidInputError(f"{what} has both typed contents and raw_input_contents; send one")
        return parse_raw(tensor.datatype, shape, raw, what)
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise InvalidInputError(f"{what}: {tensor.datatype} has no typed contents field; "
                                "send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInputError(f"{what}: contents.{field} has {len(values)} elements but shape "
                                f"{_describe_shape(shape)} needs {count}")
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.asarray(values, dtype=np.float64 if dtype.kind == "f" else None)
    return _in_range(wide, dtype, tensor.datatype, f"{what}: contents.{field}").reshape(shape)


def _flat(data: object) -> list:
    """JSON tensor data (nested lists in row-major order, or flat) as one flat list."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list = []
    for item in data:
        flat.extend(_flat(item))
    return flat


def parse_json(datatype: str, shape: tuple[int, ...], data: object, what: str) -> np.ndarray:
    """JSON tensor data (the REST protocol's `data`: flat or nested, row-major) as an array of the declared
    datatype and shape. Numbers must be JSON numbers (integers for integer types), BOOL values JSON booleans,
    BYTES elements strings."""
    dtype, count = _declared(datatype, shape, what)
    try:
        values = _flat(data)
    except RecursionError:
        raise InvalidInputError(f"{what}: data is nested deeper than any tensor's rank") from None
    if len(values) != count:
        raise InvalidInputError(f"{what}: data has {len(values)} elements but shape {_describe_shape(shape)} "
                                f"needs {count}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise InvalidInputError(f"{what}: BYTES data must be JSON strings (or send binary data)")
        array = np.empty(count, dtype=object)
        array[:] = [v.encode() for v in values]
        return array.reshape(shape)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            raise InvalidInputError(f"{what}: BOOL data must be JSON true or false")
        return np.asarray(values, dtype=np.bool_).reshape(shape)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InvalidInputError(f"{what}: {datatype} data must be JSON numbers")
    if dtype.kind in "iu":
        if not all(isinstance(v, int) for v in values):
            raise InvalidInputError(f"{what}: {datatype} data must be whole numbers")
        try:
            wide = np.asarray(values, dtype=np.int64 if dtype.kind == "i" else np.uint64)
        except OverflowError:
            raise InvalidInputError(f"{what}: data has values outside the {datatype} range") from None
        return _in_range(wide, dtype, datatype, f"{what}: data").reshape(shape)
    with np.errstate(over="ignore"):
        array = np.asarray(values, dtype=np.float64).astype(dtype)
    if not np.isfinite(array).all() and np.isfinite(np.asarray(values, dtype=np.float64)).all():
        raise InvalidInputError(f"{what}: data has values that do not fit in {datatype}")
    return array.reshape(shape)


def convert(array: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
    """array as `target` when that loses nothing (see the module docstring), else InvalidInputError."""
    source = array.dtype
    if source == target:
        return array
    have, need = datatype_of(source), datatype_of(target)

    def refuse(why: str) -> InvalidInputError:
        return InvalidInputError(f"{what} is {have} but the model takes {need}; {why}")

    if source.kind in "bO" or target.kind in "bO":
        raise refuse(f"{have} does not convert, send {need}")
    if source.kind == "f" and target.kind in "iu":
        raise refuse(f"floats are not converted to integers, send {need}")
    if source.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            result = array.astype(target)
        if not np.array_equal(np.isfinite(array), np.isfinite(result)):
            raise refuse(f"some values do not fit in {need}")
        return result
    if not array.size:
        return array.astype(target)
    low, high = array.min(), array.max()
    if target.kind in "iu":
        info = np.iinfo(target)
        if low < info.min or high > info.max:
            raise refuse(f"values {low}..{high} do not fit in {need} ({info.min}..{info.max})")
    elif max(abs(int(low)), abs(int(high))) > _EXACT_INT[target]:
        raise refuse(f"integers above {_EXACT_INT[target]} are not exact in {need}")
    return array.astype(target)


def raw_bytes(array: np.ndarray) -> bytes:
    """An array as raw tensor bytes: little-endian, row-major; BYTES elements length-prefixed."""
    if datatype_of(array.dtype) != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for element in array.reshape(-1):
        data = element if isinstance(element, bytes) else str(element).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def encode_output(name: str, array: np.ndarray, binary: bool,
                  ) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes | None]:
    """An output tensor message, plus its raw bytes when `binary` (else the values go in typed contents,
    which the caller must check exist: has_typed_contents)."""
    datatype = datatype_of(array.dtype)
    tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=array.shape)
    if binary:
        return tensor, raw_bytes(array)
    flat = array.reshape(-1)
    field = getattr(tensor.contents, _CONTENTS[datatype])
    if datatype == "BYTES":
        field.extend(e if isinstance(e, bytes) else str(e).encode() for e in flat)
    else:
        field.extend(flat.tolist())
    return tensor, None
